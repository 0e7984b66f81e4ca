/* SPDX-License-Identifier: MIT */
/*
 * daemon_cost.c - what a fault costs when ufaultd serves it, against the
 * same fault served in-process: same file source (page cache warm), same
 * number of workers, same machine, one run.
 *
 * Each measurement is a fresh child process that maps --size of anonymous
 * memory, has it filled from the data file, and reads one byte of every
 * page in order (one fault per page: no fault-around on either side),
 * checking each page's first 8 bytes. Its time per fault is what the
 * table shows:
 *  - "in-process": a libufault context in the child (--workers workers)
 *    with a FILE source;
 *  - "ufaultd": the child hands its uffd and the file to ufaultd
 *    (ufault_remote_connect / ufault_remote_register), started once by this
 *    program with --workers workers per client.
 * Modes alternate (in-process, ufaultd, ufaultd, in-process, ...) over
 * --runs pairs; medians are reported, with the verdict of the issue's
 * target: ufaultd / in-process <= 1.10.
 *
 * Only the public API is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ufault/ufault.h>

#include "bench_file.h"
#include "bench_util.h"

enum mode { M_LOCAL, M_DAEMON, M_NR };
static const char *const mode_names[M_NR] = {"in-process", "ufaultd"};

static struct {
	size_t size;
	unsigned int runs, workers;
	const char *ufaultd, *file;
	char sock[108];
} O = {.size = 64u << 20, .runs = 5, .workers = 1};

static size_t ps;

static void fill(void *buf, uint64_t off, size_t len)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		w[i] = mix64((off / 8 + i) ^ 0xc05f);
}

void usage(FILE *f)
{
	fprintf(f,
		"usage: daemon_cost [options]\n"
		"Time per fault of a child reading one byte of every page of a file-backed\n"
		"region, served in-process and served by ufaultd, alternated over --runs\n"
		"pairs; medians and the ratio (target: ufaultd / in-process <= 1.10).\n"
		"\n"
		"  --size N[KMG]   region size (default 64M)\n"
		"  --runs N        pairs of measurements (default 5)\n"
		"  --workers N     workers in-process, and ufaultd's per client (default 1)\n"
		"  --ufaultd PATH  the daemon (default: ../daemon/ufaultd next to this program)\n"
		"  --file PATH     the data file (default /var/tmp/ufault_daemon_cost.dat;\n"
		"                  created or reused)\n"
		"  --help\n");
}

/* The child: map, have it served (@m), touch every page; writes ns per
 * fault (a double) to @wfd, or exits non-zero. */
static __attribute__((noreturn)) void child(enum mode m, int wfd)
{
	size_t pages = O.size / ps;
	struct ufault_remote *rm = NULL;
	struct ufault_ctx *ctx = NULL;
	unsigned char *p;
	uint64_t t0, t1;
	double per;
	int fd, ret;

	fd = open(O.file, O_RDONLY | O_CLOEXEC);
	p = mmap(NULL, O.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fd < 0 || p == MAP_FAILED)
		die("child: %s", strerror(errno));
	if (m == M_LOCAL) {
		struct ufault_config cfg;
		struct ufault_source src;

		ufault_config_init(&cfg);
		cfg.nr_workers = O.workers;
		ret = ufault_ctx_create(&ctx, &cfg);
		ufault_source_init(&src, UFAULT_SOURCE_FILE);
		src.file.fd = fd;
		if (!ret)
			ret = ufault_region_register(ctx, p, O.size, &src, 0, NULL);
	} else {
		struct ufault_remote_config rc;

		ufault_remote_config_init(&rc);
		rc.socket_path = O.sock;
		rc.takeover_ms = UINT_MAX; /* measure the daemon, never ourselves */
		ret = ufault_remote_connect(&rm, &rc);
		if (!ret)
			ret = ufault_remote_register(rm, p, O.size, fd, 0, 0);
	}
	if (ret)
		die("child (%s): %s", mode_names[m], ufault_strerror(ret));
	t0 = now_ns();
	for (size_t i = 0; i < pages; i++) {
		uint64_t want, got;

		memcpy(&got, p + i * ps, 8);
		fill(&want, i * ps, 8);
		if (got != want)
			die("child (%s): page %zu holds the wrong bytes", mode_names[m], i);
	}
	t1 = now_ns();
	per = (double)(t1 - t0) / (double)pages;
	if (write(wfd, &per, sizeof(per)) != sizeof(per))
		die("child: write: %s", strerror(errno));
	_exit(0);
}

static double measure(enum mode m)
{
	int pfd[2], status;
	double per = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		close(pfd[0]);
		child(m, pfd[1]);
	}
	close(pfd[1]);
	if (read(pfd[0], &per, sizeof(per)) != sizeof(per))
		per = 0;
	close(pfd[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) || !per)
		die("the %s child failed", mode_names[m]);
	return per;
}

static pid_t start_daemon(void)
{
	char workers[16];
	pid_t pid;

	snprintf(O.sock, sizeof(O.sock), "/tmp/ufault_daemon_cost_%d.sock", (int)getpid());
	snprintf(workers, sizeof(workers), "%u", O.workers);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (!pid) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (null >= 0) /* its log of every connection is not the table */
			dup2(null, STDERR_FILENO);
		execl(O.ufaultd, O.ufaultd, "--socket", O.sock, "--workers", workers, (char *)NULL);
		_exit(127); /* reported by the wait below */
	}
	/* Until it accepts (bounded: 10 s). */
	for (int i = 0; i < 1000; i++) {
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

		strcpy(a.sun_path, O.sock);
		ok = s >= 0 && !connect(s, (struct sockaddr *)&a, sizeof(a));
		if (s >= 0)
			close(s);
		if (ok)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			die("ufaultd (%s) exited at start", O.ufaultd);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	die("ufaultd did not accept on %s within 10 s", O.sock);
}

static char *default_daemon(const char *argv0)
{
	static char path[PATH_MAX + 32];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	(void)argv0;
	if (n <= 0)
		return "ufaultd";
	self[n] = 0;
	slash = strrchr(self, '/');
	*slash = 0;
	snprintf(path, sizeof(path), "%s/../daemon/ufaultd", self);
	return path;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"size", required_argument, NULL, 's'},
	    {"runs", required_argument, NULL, 'r'},
	    {"workers", required_argument, NULL, 'w'},
	    {"ufaultd", required_argument, NULL, 'u'},
	    {"file", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	double *v[M_NR], med[M_NR];
	const char *how;
	pid_t daemon;
	int c;

	page_size = sysconf(_SC_PAGESIZE);
	ps = (size_t)page_size;
	O.ufaultd = default_daemon(argv[0]);
	O.file = "/var/tmp/ufault_daemon_cost.dat";
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			O.size = parse_size(optarg, "--size");
			break;
		case 'r':
			O.runs = (unsigned int)parse_long(optarg, "--runs", 1, 1000);
			break;
		case 'w':
			O.workers = (unsigned int)parse_long(optarg, "--workers", 1, 64);
			break;
		case 'u':
			O.ufaultd = optarg;
			break;
		case 'f':
			O.file = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (!O.size || O.size % ps)
		bad_usage("--size must be a non-zero multiple of the page size");
	how = bench_data_file(O.file, O.size, fill, NULL, true);
	{
		/* Warm the page cache: both modes read it from memory. */
		int fd = open(O.file, O_RDONLY | O_CLOEXEC);
		void *buf = xcalloc(1, O.size);

		if (fd < 0)
			die("%s: %s", O.file, strerror(errno));
		bench_pread_all(fd, O.file, buf, O.size, 0);
		free(buf);
		close(fd);
	}
	daemon = start_daemon();
	printf("daemon_cost: %zu MiB region (%zu faults per run), %u worker(s), %u runs, data "
	       "file %s (%s), daemon %s\n",
	       O.size >> 20, O.size / ps, O.workers, O.runs, O.file, how, O.ufaultd);
	for (int m = 0; m < M_NR; m++)
		v[m] = xcalloc(O.runs, sizeof(double));
	for (unsigned int r = 0; r < O.runs; r++) {
		/* ABBA: neither mode always runs first. */
		enum mode first = r % 2 ? M_DAEMON : M_LOCAL;

		v[first][r] = measure(first);
		v[!first][r] = measure(!first);
		printf("  run %u: in-process %.2f us/fault, ufaultd %.2f us/fault\n", r + 1,
		       v[M_LOCAL][r] / 1e3, v[M_DAEMON][r] / 1e3);
	}
	kill(daemon, SIGTERM);
	waitpid(daemon, NULL, 0);
	for (int m = 0; m < M_NR; m++)
		med[m] = median(v[m], (int)O.runs);
	printf("\n%-12s %14s\n", "mode", "us/fault (med)");
	for (int m = 0; m < M_NR; m++)
		printf("%-12s %14.2f\n", mode_names[m], med[m] / 1e3);
	printf("\nverdict: ufaultd / in-process = %.3f (target <= 1.10): %s\n",
	       med[M_DAEMON] / med[M_LOCAL],
	       med[M_DAEMON] <= 1.10 * med[M_LOCAL] ? "PASS" : "FAIL");
	return 0;
}
