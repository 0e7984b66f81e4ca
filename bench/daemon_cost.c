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
 * With --budget BYTES (since 0.7), each run also measures two more, after
 * the pair: "map", the child's pages a mapping of ufault_remote_map()
 * (MAP_SHARED memfd, filled by ufaultd, written back: here only read),
 * and "map+budget", the same with the client's budget set to BYTES first
 * (SET_BUDGET, as ufaultctl sends it): past the budget every fault also
 * has one page evicted (compared with the file, punched out).
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

#include <ufault/protocol.h>
#include <ufault/ufault.h>

#include "bench_file.h"
#include "bench_util.h"

enum mode { M_LOCAL, M_DAEMON, M_MAP, M_MAP_BUDGET, M_NR };
static const char *const mode_names[M_NR] = {"in-process", "ufaultd", "map", "map+budget"};

static struct {
	size_t size, budget;
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
		"  --budget N[KMG] also measure ufault_remote_map() without and with this\n"
		"                  budget (default: not measured)\n"
		"  --ufaultd PATH  the daemon (default: ../daemon/ufaultd next to this program)\n"
		"  --file PATH     the data file (default /var/tmp/ufault_daemon_cost.dat;\n"
		"                  created or reused)\n"
		"  --help\n");
}

/* One request on a connection of its own (no HELLO: LIST and SET_BUDGET
 * need none); the reply's status, its data into @data. */
static int ctl_request(uint16_t type, const void *body, uint32_t len, void *data, size_t cap,
		       uint64_t *value)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	unsigned char buf[sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY];
	struct ufault_proto_hdr h = {.magic = UFAULT_PROTO_MAGIC,
				     .version = UFAULT_PROTO_VERSION,
				     .type = type,
				     .len = len,
				     .seq = 1};
	struct ufault_proto_reply rep;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;
	ssize_t n;

	strcpy(a.sun_path, O.sock);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, len);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) ||
	    write(s, buf, sizeof(h) + len) != (ssize_t)(sizeof(h) + len))
		die("ufaultd control connection: %s", strerror(errno));
	while ((n = read(s, buf + got, sizeof(buf) - got)) > 0) {
		got += (size_t)n;
		memcpy(&h, buf, sizeof(h) < got ? sizeof(h) : got);
		if (got >= sizeof(h) && got >= sizeof(h) + h.len)
			break;
	}
	close(s);
	if (got < sizeof(h) + sizeof(rep) || h.type != UFAULT_MSG_REPLY)
		die("ufaultd control connection: no reply");
	memcpy(&rep, buf + sizeof(h), sizeof(rep));
	if (data)
		memcpy(data, buf + sizeof(h) + sizeof(rep),
		       h.len - sizeof(rep) < cap ? h.len - sizeof(rep) : cap);
	if (value)
		*value = rep.value;
	return rep.status;
}

/* This process's budget, as ufaultctl sets one: its id from LIST. */
static void set_own_budget(size_t bytes)
{
	static struct ufault_proto_client
	    e[(UFAULT_PROTO_MAX_BODY - sizeof(struct ufault_proto_reply)) /
	      sizeof(struct ufault_proto_client)];
	struct ufault_proto_budget b = {.bytes = bytes};
	uint64_t n = 0;
	int err = ctl_request(UFAULT_MSG_LIST, NULL, 0, e, sizeof(e), &n);

	for (uint64_t i = 0; !err && i < n && i < sizeof(e) / sizeof(e[0]); i++)
		if (e[i].pid == (uint32_t)getpid())
			b.client_id = e[i].id;
	if (err || !b.client_id)
		die("child: not in ufaultd's LIST");
	err = ctl_request(UFAULT_MSG_SET_BUDGET, &b, sizeof(b), NULL, 0, NULL);
	if (err)
		die("child: SET_BUDGET: %s", ufault_strerror(err));
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

	/* Read-write for ufault_remote_map() (nothing is written: the pages
	 * are only read, so none differs from the file). */
	fd = open(O.file, m >= M_MAP ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
	p = m >= M_MAP
		? NULL
		: mmap(NULL, O.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
		if (!ret && m == M_DAEMON)
			ret = ufault_remote_register(rm, p, O.size, fd, 0, 0);
		else if (!ret)
			ret = ufault_remote_map(rm, O.size, fd, 0, (void **)&p);
		if (!ret && m == M_MAP_BUDGET)
			set_own_budget(O.budget);
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
	/* Its write-back (a compare per resident page) done before the next
	 * measurement, not beside it. */
	if (m >= M_MAP && (ret = ufault_remote_unregister(rm, p, O.size)))
		die("child (%s): unregister: %s", mode_names[m], ufault_strerror(ret));
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

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"size", required_argument, NULL, 's'},    {"runs", required_argument, NULL, 'r'},
	    {"workers", required_argument, NULL, 'w'}, {"budget", required_argument, NULL, 'b'},
	    {"ufaultd", required_argument, NULL, 'u'}, {"file", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	double *v[M_NR], med[M_NR];
	int nr_modes;
	const char *how;
	pid_t daemon;
	int c;

	page_size = sysconf(_SC_PAGESIZE);
	ps = (size_t)page_size;
	O.ufaultd = bench_next_to_self("../daemon/ufaultd", "ufaultd");
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
		case 'b':
			O.budget = parse_size(optarg, "--budget");
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
	nr_modes = O.budget ? M_NR : M_MAP;
	for (int m = 0; m < M_NR; m++)
		v[m] = xcalloc(O.runs, sizeof(double));
	for (unsigned int r = 0; r < O.runs; r++) {
		/* ABBA: neither mode always runs first. */
		enum mode first = r % 2 ? M_DAEMON : M_LOCAL;

		v[first][r] = measure(first);
		v[!first][r] = measure(!first);
		printf("  run %u: in-process %.2f us/fault, ufaultd %.2f us/fault", r + 1,
		       v[M_LOCAL][r] / 1e3, v[M_DAEMON][r] / 1e3);
		for (int m = M_MAP; m < nr_modes; m++) {
			v[m][r] = measure((enum mode)m);
			printf(", %s %.2f", mode_names[m], v[m][r] / 1e3);
		}
		printf("\n");
	}
	kill(daemon, SIGTERM);
	waitpid(daemon, NULL, 0);
	for (int m = 0; m < nr_modes; m++)
		med[m] = median(v[m], (int)O.runs);
	printf("\n%-12s %14s\n", "mode", "us/fault (med)");
	for (int m = 0; m < nr_modes; m++)
		printf("%-12s %14.2f\n", mode_names[m], med[m] / 1e3);
	if (O.budget)
		printf("\nmap+budget: %zu KiB budget over %zu MiB: past it, each fault evicts a "
		       "page; map+budget / map = %.3f\n",
		       O.budget >> 10, O.size >> 20, med[M_MAP_BUDGET] / med[M_MAP]);
	printf("\nverdict: ufaultd / in-process = %.3f (target <= 1.10): %s\n",
	       med[M_DAEMON] / med[M_LOCAL],
	       med[M_DAEMON] <= 1.10 * med[M_LOCAL] ? "PASS" : "FAIL");
	return 0;
}
