/* SPDX-License-Identifier: MIT */
/*
 * ufaultctl.c - ask a running ufaultd about its clients, over the native
 * protocol (include/ufault/protocol.h) without a HELLO: a control
 * connection has no uffd and no regions, only LIST and SET_BUDGET.
 *
 *   ufaultctl [--socket PATH] status           reachable? how many clients
 *   ufaultctl [--socket PATH] clients          LIST as a table
 *   ufaultctl [--socket PATH] stats [ID]       one client's counters (all: totals)
 *   ufaultctl [--socket PATH] budget ID BYTES  SET_BUDGET
 *
 * STATS is per connection (a client's own), so `stats ID` reads the entry
 * of LIST for that client. Exit status: 0 done, 1 the daemon refused or is
 * unreachable, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"

#define MSG_MAX (sizeof(struct ufault_proto_hdr) + UFAULT_PROTO_MAX_BODY)
#define MAX_ENTRIES                                                                                \
	((UFAULT_PROTO_MAX_BODY - sizeof(struct ufault_proto_reply)) /                             \
	 sizeof(struct ufault_proto_client))

static const char *socket_path = UFAULT_PROTO_DEFAULT_PATH;

static int ctl_connect(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ufaultctl: %s: path too long\n", socket_path);
		return -1;
	}
	strcpy(sa.sun_path, socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "ufaultctl: cannot reach ufaultd at %s: %s\n", socket_path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* All @len bytes sent (@wr) or received: 0, or -1 (an error or EOF). */
static int xfer_all(int fd, void *buf, size_t len, bool wr)
{
	char *p = buf;

	while (len) {
		ssize_t n = wr ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * One request, one reply: 0 and *@m filled (its extra data points into
 * @buf), or -1 (the reason printed). The reply's status is the caller's.
 */
static int request(int fd, uint16_t type, const void *body, uint32_t len, unsigned char *buf,
		   struct ufault__proto_msg *m)
{
	static uint32_t seq;
	const char *why = "";
	size_t n;
	long total;

	n = ufault__proto_build(buf, type, ++seq, body, len);
	if (xfer_all(fd, buf, n, true) ||
	    xfer_all(fd, buf, sizeof(struct ufault_proto_hdr), false)) {
		fprintf(stderr, "ufaultctl: the daemon closed the connection\n");
		return -1;
	}
	total = ufault__proto_frame(buf, sizeof(struct ufault_proto_hdr), &why);
	if (total <= 0 ||
	    xfer_all(fd, buf + sizeof(struct ufault_proto_hdr),
		     (size_t)total - sizeof(struct ufault_proto_hdr), false) ||
	    ufault__proto_check(buf, (size_t)total, 0, (uint64_t)sysconf(_SC_PAGESIZE), m, &why) ||
	    m->hdr.type != UFAULT_MSG_REPLY || m->hdr.seq != seq) {
		fprintf(stderr, "ufaultctl: bad reply from the daemon (%s)\n", why);
		return -1;
	}
	return 0;
}

/* LIST into @out (at most MAX_ENTRIES); the count, or -1. */
static long list(int fd, struct ufault_proto_client *out)
{
	unsigned char buf[MSG_MAX];
	struct ufault__proto_msg m;

	if (request(fd, UFAULT_MSG_LIST, NULL, 0, buf, &m))
		return -1;
	if (m.u.reply.status) {
		fprintf(stderr, "ufaultctl: LIST: %s\n", strerror(-m.u.reply.status));
		return -1;
	}
	if (m.u.reply.value > MAX_ENTRIES || m.extra_len != m.u.reply.value * sizeof(*out)) {
		fprintf(stderr, "ufaultctl: LIST: malformed reply\n");
		return -1;
	}
	memcpy(out, m.extra, m.extra_len);
	return (long)m.u.reply.value;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || *end ? -1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ufaultctl [--socket PATH] status | clients | stats [ID] | "
		   "budget ID BYTES\n");
}

static void print_entry(const struct ufault_proto_client *e)
{
	printf("client:   %llu\n"
	       "kind:     %s\n"
	       "pid:      %u\n"
	       "uid:      %u\n"
	       "regions:  %llu\n"
	       "faults:   %llu\n"
	       "errors:   %llu\n"
	       "budget:   %llu bytes%s\n"
	       "resident: %llu pages (write-back mappings)\n"
	       "evicted:  %llu pages\n",
	       (unsigned long long)e->id, e->firecracker ? "firecracker" : "native", e->pid, e->uid,
	       (unsigned long long)e->regions, (unsigned long long)e->faults,
	       (unsigned long long)e->errors, (unsigned long long)e->budget,
	       e->budget ? "" : " (none)", (unsigned long long)e->resident,
	       (unsigned long long)e->evicted);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static struct ufault_proto_client e[MAX_ENTRIES];
	const char *cmd;
	long n, i;
	int c, fd, rc = 0;

	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (!strcmp(cmd, "status") || !strcmp(cmd, "clients")) {
		if (optind != argc) {
			usage(stderr);
			return 2;
		}
	} else if (!strcmp(cmd, "stats")) {
		if (argc - optind > 1) {
			usage(stderr);
			return 2;
		}
	} else if (!strcmp(cmd, "budget")) {
		if (argc - optind != 2) {
			usage(stderr);
			return 2;
		}
	} else {
		fprintf(stderr, "ufaultctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}

	fd = ctl_connect();
	if (fd < 0)
		return 1;

	if (!strcmp(cmd, "budget")) {
		struct ufault_proto_budget b = {0};
		unsigned char buf[MSG_MAX];
		struct ufault__proto_msg m;

		if (parse_u64(argv[optind], &b.client_id) || !b.client_id ||
		    parse_u64(argv[optind + 1], &b.bytes)) {
			fprintf(stderr, "ufaultctl: budget ID BYTES: numbers, ID > 0\n");
			close(fd);
			return 2;
		}
		if (request(fd, UFAULT_MSG_SET_BUDGET, &b, sizeof(b), buf, &m)) {
			rc = 1;
		} else if (m.u.reply.status == -EOPNOTSUPP) {
			fprintf(stderr,
				"ufaultctl: budget for client %llu: not supported (a Firecracker "
				"client: its memory is the VMM's, use its balloon)\n",
				(unsigned long long)b.client_id);
			rc = 1;
		} else if (m.u.reply.status) {
			fprintf(stderr, "ufaultctl: budget for client %llu: %s\n",
				(unsigned long long)b.client_id, strerror(-m.u.reply.status));
			rc = 1;
		} else {
			printf("client %llu: budget %llu bytes\n", (unsigned long long)b.client_id,
			       (unsigned long long)b.bytes);
		}
		close(fd);
		return rc;
	}

	n = list(fd, e);
	close(fd);
	if (n < 0)
		return 1;

	if (!strcmp(cmd, "status")) {
		printf("ufaultd at %s: running, %ld client%s\n", socket_path, n, n == 1 ? "" : "s");
	} else if (!strcmp(cmd, "clients")) {
		printf("%-8s %-12s %-8s %-6s %8s %12s %8s\n", "ID", "KIND", "PID", "UID", "REGIONS",
		       "FAULTS", "ERRORS");
		for (i = 0; i < n; i++)
			printf("%-8llu %-12s %-8u %-6u %8llu %12llu %8llu\n",
			       (unsigned long long)e[i].id,
			       e[i].firecracker ? "firecracker" : "native", e[i].pid, e[i].uid,
			       (unsigned long long)e[i].regions, (unsigned long long)e[i].faults,
			       (unsigned long long)e[i].errors);
	} else if (optind < argc) { /* stats ID */
		uint64_t id;

		if (parse_u64(argv[optind], &id)) {
			fprintf(stderr, "ufaultctl: stats ID: a number\n");
			return 2;
		}
		for (i = 0; i < n && e[i].id != id; i++)
			;
		if (i == n) {
			fprintf(stderr, "ufaultctl: no client %llu\n", (unsigned long long)id);
			return 1;
		}
		print_entry(&e[i]);
	} else { /* stats: totals */
		uint64_t faults = 0, regions = 0, errors = 0;

		for (i = 0; i < n; i++) {
			faults += e[i].faults;
			regions += e[i].regions;
			errors += e[i].errors;
		}
		printf("clients:  %ld\nregions:  %llu\nfaults:   %llu\nerrors:   %llu\n", n,
		       (unsigned long long)regions, (unsigned long long)faults,
		       (unsigned long long)errors);
	}
	return 0;
}
