/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - GET /metrics on 127.0.0.1:--metrics-port, HTTP/1.0, in the
 * Prometheus text format (version 0.0.4), on the daemon's loop with libuv
 * TCP.
 *
 * A scrape reads each served client's counters with ufault_stats() and
 * ufault_stats_histogram(), which take no lock and never block, so the loop
 * answers in the time it takes to format the text. Connections are bounded
 * in number and in time: a scraper that never finishes its request is cut
 * off, and cannot hold the loop or more than its share of slots.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ufaultd.h"

#define HTTP_MAX_CONNS 16
#define HTTP_TIMEOUT_MS 10000
#define HTTP_REQ_MAX 4096

struct http_conn;

struct ufd_metrics {
	struct ufd_daemon *d;
	uv_tcp_t server;
	struct http_conn *conns; /* open connections, closed with the server */
	unsigned int nr_conns;
	bool server_closed;
};

struct http_conn {
	struct ufd_metrics *m;
	struct http_conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	char req[HTTP_REQ_MAX];
	size_t len;
	char *resp;
	int open_handles; /* tcp and timer: freed when both closed */
	bool done;	  /* answering or answered: input is ignored */
};

/* Coarse latency buckets for the histogram, in ns and as Prometheus "le"
 * values: the library's buckets are ~3% wide, far too many to export. */
static const struct {
	uint64_t ns;
	const char *le;
} le_bounds[] = {
    {1000, "1e-06"},	{2500, "2.5e-06"},  {5000, "5e-06"},	{10000, "1e-05"},
    {25000, "2.5e-05"}, {50000, "5e-05"},   {100000, "0.0001"}, {250000, "0.00025"},
    {500000, "0.0005"}, {1000000, "0.001"}, {10000000, "0.01"}, {100000000, "0.1"},
};
#define NR_LE (sizeof(le_bounds) / sizeof(le_bounds[0]))

/* ------------------------------------------------------------------ */
/* Text                                                                 */
/* ------------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->oom)
		return;
	for (;;) {
		size_t room = sb->cap - sb->len;

		va_start(ap, fmt);
		n = vsnprintf(sb->p ? sb->p + sb->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = true;
			return;
		}
		if ((size_t)n < room) {
			sb->len += (size_t)n;
			return;
		}
		size_t cap = sb->cap ? sb->cap : 4096;
		while (cap - sb->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(sb->p, cap);
		if (!p) {
			sb->oom = true;
			return;
		}
		sb->p = p;
		sb->cap = cap;
	}
}

struct client_sample {
	uint64_t id;
	pid_t pid;
	enum ufd_kind kind;
	struct ufault_stats st;
	uint64_t cum[NR_LE]; /* cumulative counts per coarse bucket */
	uint64_t count;
	double sum_s;
};

static void sample_client(struct ufd_client *c, struct client_sample *s, uint64_t *hist,
			  unsigned int nb)
{
	unsigned int i, j;
	int got;

	s->id = c->id;
	s->pid = c->pid;
	s->kind = c->kind;
	s->st.size = sizeof(s->st);
	if (ufault_stats(c->ctx, &s->st))
		memset(&s->st, 0, sizeof(s->st));
	got = hist ? ufault_stats_histogram(c->ctx, hist, nb) : 0;
	if (got < 0)
		got = 0;
	if ((unsigned int)got > nb)
		got = (int)nb;
	for (i = 0; i < (unsigned int)got; i++) {
		uint64_t lo, hi, mid;

		if (!hist[i])
			continue;
		lo = ufault_stats_bucket_ns(i);
		hi = ufault_stats_bucket_ns(i + 1);
		mid = hi == UINT64_MAX ? lo : lo + (hi - lo) / 2;
		s->count += hist[i];
		s->sum_s += (double)hist[i] * (double)mid / 1e9;
		/* A bucket counts under "le" only if all of it is below. */
		for (j = 0; j < NR_LE; j++)
			if (hi <= le_bounds[j].ns)
				s->cum[j] += hist[i];
	}
}

static void labels(struct sbuf *sb, const struct client_sample *s)
{
	sb_printf(sb, "client=\"%llu\",pid=\"%d\",kind=\"%s\"", (unsigned long long)s->id,
		  (int)s->pid, ufd_kind_name(s->kind));
}

static void counter(struct sbuf *sb, const char *name, const char *help,
		    const struct client_sample *s, unsigned int n, size_t field)
{
	unsigned int i;

	sb_printf(sb, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (i = 0; i < n; i++) {
		uint64_t v;

		memcpy(&v, (const char *)&s[i].st + field, sizeof(v));
		sb_printf(sb, "%s{", name);
		labels(sb, &s[i]);
		sb_printf(sb, "} %llu\n", (unsigned long long)v);
	}
}

static char *metrics_text(struct ufd_daemon *d, size_t *len)
{
	struct client_sample *s = NULL;
	struct sbuf sb = {0};
	struct ufd_client *c;
	uint64_t *hist = NULL;
	unsigned int n = 0, conns = 0, detached = 0, i, j, r;
	int nb;

	for (c = d->clients; c; c = c->next) {
		n += ufd_client_listed(c);
		conns += c->fd >= 0;
		detached += ufd_client_listed(c) && c->fd < 0;
	}
	if (n)
		s = calloc(n, sizeof(*s));
	/* The bucket count is the library's; any context answers it. */
	nb = 0;
	for (c = d->clients; c && !nb; c = c->next)
		if (ufd_client_listed(c))
			nb = ufault_stats_histogram(c->ctx, NULL, 0);
	if (nb > 0)
		hist = calloc((size_t)nb, sizeof(*hist));
	if (n && !s) {
		free(hist);
		return NULL;
	}
	i = 0;
	for (c = d->clients; c && i < n; c = c->next) {
		if (!ufd_client_listed(c))
			continue;
		if (hist)
			memset(hist, 0, (size_t)nb * sizeof(*hist));
		sample_client(c, &s[i++], hist, nb > 0 ? (unsigned int)nb : 0);
	}
	free(hist);

	sb_printf(&sb,
		  "# HELP ufaultd_clients Clients served now (native sessions and "
		  "Firecracker VMs).\n# TYPE ufaultd_clients gauge\nufaultd_clients %u\n",
		  n);
	sb_printf(&sb,
		  "# HELP ufaultd_connections Connections open now, served or not.\n"
		  "# TYPE ufaultd_connections gauge\nufaultd_connections %u\n",
		  conns);
	sb_printf(&sb,
		  "# HELP ufaultd_clients_detached Clients served without a connection: taken "
		  "back from the fd store after a restart, or forked children.\n"
		  "# TYPE ufaultd_clients_detached gauge\nufaultd_clients_detached %u\n",
		  detached);
	sb_printf(&sb, "# HELP ufaultd_refused_total Connections and requests refused.\n"
		       "# TYPE ufaultd_refused_total counter\n");
	for (r = 0; r < UFD_REFUSED_NR; r++)
		sb_printf(&sb, "ufaultd_refused_total{reason=\"%s\"} %llu\n", ufd_refusal_name(r),
			  (unsigned long long)d->refused[r]);
	counter(&sb, "ufault_faults_total", "Page faults handled for the client.", s, n,
		offsetof(struct ufault_stats, faults));
	counter(&sb, "ufault_pages_total", "System pages installed in the client.", s, n,
		offsetof(struct ufault_stats, pages_installed));
	counter(&sb, "ufault_errors_total", "Fills that failed (source errors).", s, n,
		offsetof(struct ufault_stats, source_errors));
	sb_printf(&sb, "# HELP ufault_fault_latency_seconds Fault resolution time, from the "
		       "message read to the install.\n"
		       "# TYPE ufault_fault_latency_seconds histogram\n");
	for (i = 0; i < n; i++) {
		for (j = 0; j < NR_LE; j++) {
			sb_printf(&sb, "ufault_fault_latency_seconds_bucket{");
			labels(&sb, &s[i]);
			sb_printf(&sb, ",le=\"%s\"} %llu\n", le_bounds[j].le,
				  (unsigned long long)s[i].cum[j]);
		}
		sb_printf(&sb, "ufault_fault_latency_seconds_bucket{");
		labels(&sb, &s[i]);
		sb_printf(&sb, ",le=\"+Inf\"} %llu\n", (unsigned long long)s[i].count);
		sb_printf(&sb, "ufault_fault_latency_seconds_sum{");
		labels(&sb, &s[i]);
		sb_printf(&sb, "} %.9f\n", s[i].sum_s);
		sb_printf(&sb, "ufault_fault_latency_seconds_count{");
		labels(&sb, &s[i]);
		sb_printf(&sb, "} %llu\n", (unsigned long long)s[i].count);
	}
	free(s);
	if (sb.oom) {
		free(sb.p);
		return NULL;
	}
	*len = sb.len;
	return sb.p;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */
/* ------------------------------------------------------------------ */

/* The metrics object goes once its server and every connection closed. */
static void metrics_release(struct ufd_metrics *m)
{
	if (m->server_closed && !m->nr_conns)
		free(m);
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *hc = h->data;
	struct ufd_metrics *m = hc->m;

	if (--hc->open_handles)
		return;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		m->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	m->nr_conns--;
	free(hc->resp);
	free(hc);
	metrics_release(m);
}

static void conn_close(struct http_conn *hc)
{
	if (!uv_is_closing((uv_handle_t *)&hc->tcp))
		uv_close((uv_handle_t *)&hc->tcp, conn_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&hc->timer))
		uv_close((uv_handle_t *)&hc->timer, conn_handle_closed);
}

static void conn_written(uv_write_t *wr, int status)
{
	conn_close(wr->data);
}

static void conn_respond(struct http_conn *hc, const char *status, const char *body,
			 size_t body_len)
{
	static const char fmt[] = "HTTP/1.0 %s\r\n"
				  "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
				  "Content-Length: %zu\r\n"
				  "Connection: close\r\n\r\n";
	size_t head = (size_t)snprintf(NULL, 0, fmt, status, body_len);
	uv_buf_t buf;

	hc->done = true;
	uv_read_stop((uv_stream_t *)&hc->tcp);
	hc->resp = malloc(head + body_len + 1);
	if (!hc->resp) {
		conn_close(hc);
		return;
	}
	snprintf(hc->resp, head + 1, fmt, status, body_len);
	memcpy(hc->resp + head, body, body_len);
	buf = uv_buf_init(hc->resp, (unsigned int)(head + body_len));
	hc->wr.data = hc;
	if (uv_write(&hc->wr, (uv_stream_t *)&hc->tcp, &buf, 1, conn_written))
		conn_close(hc);
}

static void conn_request(struct http_conn *hc)
{
	static const char not_found[] = "only /metrics is here\n";
	static const char bad_method[] = "only GET\n";
	char *text;
	size_t len = 0;
	const char *path;

	hc->req[hc->len < sizeof(hc->req) ? hc->len : sizeof(hc->req) - 1] = '\0';
	if (strncmp(hc->req, "GET ", 4)) {
		conn_respond(hc, "405 Method Not Allowed", bad_method, sizeof(bad_method) - 1);
		return;
	}
	path = hc->req + 4;
	if (strncmp(path, "/metrics", 8) ||
	    (path[8] != ' ' && path[8] != '?' && path[8] != '\r' && path[8] != '\n')) {
		conn_respond(hc, "404 Not Found", not_found, sizeof(not_found) - 1);
		return;
	}
	text = metrics_text(hc->m->d, &len);
	if (!text) {
		conn_respond(hc, "500 Internal Server Error", "out of memory\n", 14);
		return;
	}
	conn_respond(hc, "200 OK", text, len);
	free(text);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *hc = h->data;

	/* One byte kept for the terminating NUL. */
	buf->base = hc->req + hc->len;
	buf->len = sizeof(hc->req) - 1 - hc->len;
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *hc = s->data;

	if (hc->done)
		return;
	if (nread < 0) {
		conn_close(hc);
		return;
	}
	hc->len += (size_t)nread;
	hc->req[hc->len] = '\0';
	if (strstr(hc->req, "\r\n\r\n") || strstr(hc->req, "\n\n"))
		conn_request(hc);
	else if (hc->len == sizeof(hc->req) - 1)
		conn_respond(hc, "431 Request Header Fields Too Large", "", 0);
}

static void conn_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct ufd_metrics *m = server->data;
	struct http_conn *hc;

	if (status < 0)
		return;
	hc = calloc(1, sizeof(*hc));
	if (!hc || uv_tcp_init(m->d->loop, &hc->tcp)) {
		/* libuv keeps the connection queued and stops listening until
		 * it is accepted: the next scrape after memory comes back. */
		ufd_log(m->d, UFAULT_LOG_ERROR, "metrics: out of memory for a connection");
		free(hc);
		return;
	}
	hc->m = m;
	hc->tcp.data = hc;
	hc->open_handles = 2;
	uv_timer_init(m->d->loop, &hc->timer);
	hc->timer.data = hc;
	hc->next = m->conns;
	if (m->conns)
		m->conns->prev = hc;
	m->conns = hc;
	m->nr_conns++;
	if (uv_accept(server, (uv_stream_t *)&hc->tcp) || m->nr_conns > HTTP_MAX_CONNS ||
	    uv_read_start((uv_stream_t *)&hc->tcp, conn_alloc, conn_read)) {
		conn_close(hc);
		return;
	}
	uv_timer_start(&hc->timer, conn_timeout, HTTP_TIMEOUT_MS, 0);
}

int ufd_metrics_start(struct ufd_daemon *d)
{
	struct ufd_metrics *m = calloc(1, sizeof(*m));
	struct sockaddr_in sa;
	int err;

	if (!m)
		return UV_ENOMEM;
	m->d = d;
	err = uv_ip4_addr("127.0.0.1", d->metrics_port, &sa);
	if (!err)
		err = uv_tcp_init(d->loop, &m->server);
	if (err) {
		free(m);
		return err;
	}
	m->server.data = m;
	d->metrics = m;
	err = uv_tcp_bind(&m->server, (const struct sockaddr *)&sa, 0);
	if (!err)
		err = uv_listen((uv_stream_t *)&m->server, 64, on_connection);
	if (err) {
		ufd_log(d, UFAULT_LOG_ERROR, "metrics on 127.0.0.1:%d: %s", d->metrics_port,
			uv_strerror(err));
		return err; /* daemon_stop() closes the server */
	}
	ufd_log(d, UFAULT_LOG_INFO, "metrics on http://127.0.0.1:%d/metrics", d->metrics_port);
	return 0;
}

static void server_closed(uv_handle_t *h)
{
	struct ufd_metrics *m = h->data;

	m->server_closed = true;
	metrics_release(m);
}

void ufd_metrics_stop(struct ufd_daemon *d)
{
	struct ufd_metrics *m = d->metrics;
	struct http_conn *hc;

	if (!m)
		return;
	d->metrics = NULL;
	/* A scrape in progress must not hold the daemon's exit. */
	for (hc = m->conns; hc; hc = hc->next)
		conn_close(hc);
	uv_close((uv_handle_t *)&m->server, server_closed);
}
