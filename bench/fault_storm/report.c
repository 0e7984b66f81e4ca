// SPDX-License-Identifier: MIT
/*
 * report.c - sections (a workload over modes x thread counts, runs
 * interleaved, medians), their tables and JSON lines, the header, and the
 * verdicts: one const table of the comparisons this project claims, each
 * row naming its section, metric, the two measurements compared, the
 * comparison and the target. The print code has no targets of its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "fault_storm.h"

static double median_of(const struct meas *m, size_t field_off)
{
	return median_field(m->r, sizeof(m->r[0]), m->n, field_off);
}

static uint64_t median_u64(const struct meas *m, size_t field_off)
{
	return median_field_u64(m->r, sizeof(m->r[0]), m->n, field_off);
}

static void take_median(struct meas *m)
{
	struct result *d = &m->med;

	*d = m->r[0];
	d->elapsed_s = median_of(m, offsetof(struct result, elapsed_s));
	d->faults_per_s = median_of(m, offsetof(struct result, faults_per_s));
	d->proxy_ops_per_s = median_of(m, offsetof(struct result, proxy_ops_per_s));
	d->us_mean = median_of(m, offsetof(struct result, us_mean));
	d->us_p50 = median_of(m, offsetof(struct result, us_p50));
	d->us_p99 = median_of(m, offsetof(struct result, us_p99));
	d->proxy_call_s = median_of(m, offsetof(struct result, proxy_call_s));
	d->proxy_fault_s = median_of(m, offsetof(struct result, proxy_fault_s));
	for (int k = 0; k <= PO_NR; k++) {
		size_t o = k < PO_NR
			       ? offsetof(struct result, op) + (size_t)k * sizeof(struct op_stats)
			       : offsetof(struct result, op_all);
		struct op_stats *os = k < PO_NR ? &d->op[k] : &d->op_all;

		os->us_p50 = median_of(m, o + offsetof(struct op_stats, us_p50));
		os->us_p99 = median_of(m, o + offsetof(struct op_stats, us_p99));
		os->us_max = median_of(m, o + offsetof(struct op_stats, us_max));
		os->n = median_u64(m, o + offsetof(struct op_stats, n));
	}
	d->faults = median_u64(m, offsetof(struct result, faults));
	d->proxy_ops = median_u64(m, offsetof(struct result, proxy_ops));
	d->spec_aborts = median_u64(m, offsetof(struct result, spec_aborts));
	d->lib_faults = median_u64(m, offsetof(struct result, lib_faults));
	d->proxy_fallbacks = median_u64(m, offsetof(struct result, proxy_fallbacks));
}

static struct meas *find_meas(const struct section *s, enum mode mode, int threads, int proxies)
{
	int i;

	if (!s)
		return NULL;
	for (i = 0; i < s->nr_meas; i++) {
		struct meas *m = &s->meas[i];

		if (m->mode == mode && m->threads == threads && m->proxies == proxies && m->n)
			return m;
	}
	return NULL;
}

static void json_op(const char *name, const struct op_stats *o, bool comma)
{
	printf("\"%s\":{\"n\":%" PRIu64 ",\"us_p50\":%.2f,\"us_p99\":%.2f,\"us_max\":%.2f}%s", name,
	       o->n, o->us_p50, o->us_p99, o->us_max, comma ? "," : "");
}

static void json_result(const struct section *s, const struct meas *m)
{
	const struct run_cfg *b = &s->base;
	const struct result *r = &m->med;
	char lat[96];

	latency_describe(&b->lat, lat, sizeof(lat));
	printf("{\"section\":\"%s\",\"workload\":\"%s\",\"variant\":\"%s\",\"mode\":\"%s\","
	       "\"threads\":%d,\"proxies\":%d,\"source\":\"%s\",\"latency_us\":%u,"
	       "\"latency\":\"%s\",\"size\":%zu,\"seconds\":%.3f,\"runs\":%d,\"pinned\":%s,"
	       "\"workers\":%u,\"uffds\":%u,\"faults\":%" PRIu64 ",\"faults_per_s\":%.1f,"
	       "\"proxy_ops\":%" PRIu64 ",\"proxy_ops_per_s\":%.2f,\"fault_us_mean\":%.3f,"
	       "\"fault_us_p50\":%.3f,\"fault_us_p99\":%.3f,\"spec_aborts\":%" PRIu64 ","
	       "\"handler_faults\":%" PRIu64 ",\"proxy_fallbacks\":%" PRIu64 ","
	       "\"proxy_call_s\":%.4f,\"proxy_fault_s\":%.4f,\"proxy_op\":{",
	       s->name, workloads[b->wl].name, b->wl == W_MIXED ? variant_names[b->variant] : "",
	       mode_names[m->mode], m->threads, m->proxies, src_names[b->src],
	       b->src != S_ZERO && b->lat.dist == LD_FIXED ? b->lat.us : 0,
	       b->src != S_ZERO ? lat : "", b->size, b->seconds, m->n, opt.pin ? "true" : "false",
	       r->workers, r->uffds, r->faults, r->faults_per_s, r->proxy_ops, r->proxy_ops_per_s,
	       r->us_mean, r->us_p50, r->us_p99, r->spec_aborts, r->lib_faults, r->proxy_fallbacks,
	       r->proxy_call_s, r->proxy_fault_s);
	for (int k = 0; k < PO_NR; k++)
		json_op(proxy_op_names[k], &r->op[k], true);
	json_op("all", &r->op_all, false);
	printf("},\"elapsed_s\":%.4f}\n", r->elapsed_s);
	fflush(stdout);
}

static void fmt_ratio(char *buf, size_t n, double num, double den)
{
	if (den > 0 && num > 0)
		snprintf(buf, n, "%.2fx", num / den);
	else
		snprintf(buf, n, "-");
}

static void section_title(const struct section *s)
{
	const struct run_cfg *b = &s->base;

	printf("\n== %s: workload %s", s->name, workloads[b->wl].name);
	if (b->wl == W_MIXED)
		printf(" (%s)", variant_names[b->variant]);
	printf(", source %s", src_names[b->src]);
	if (b->src != S_ZERO) {
		char lat[96];

		latency_describe(&b->lat, lat, sizeof(lat));
		printf(" %s", lat);
	}
	printf(", %zu KiB per thread", b->size >> 10);
	if (b->wl == W_MIXED)
		printf(", proxy arena %zu KiB", b->proxy_size >> 10);
	printf(", %.2f s x %d run%s (median%s) ==\n", b->seconds, s->runs, s->runs > 1 ? "s" : "",
	       s->runs > 1 ? ", modes interleaved" : "");
}

static void print_table(const struct section *s)
{
	bool proxies = workloads[s->base.wl].has_proxies;
	int i;

	section_title(s);
	printf("%-8s %3s %3s %10s %10s %9s %9s %9s %8s %7s %9s %8s %8s %6s\n", "mode", "T", "P",
	       "faults/s", "proxyops/s", "us/f mean", "us/f p50", "us/f p99", "aborts", "wk/uffd",
	       "hndl flts", "vs min", "vs glob", "prx fl");
	for (i = 0; i < s->nr_meas; i++) {
		const struct meas *m = &s->meas[i];
		const struct meas *mn = find_meas(s, M_MINIMAL, m->threads, m->proxies);
		const struct meas *gl = find_meas(s, M_GLOBAL, m->threads, m->proxies);
		char fps[16], pps[16], vmin[16], vgl[16], wu[16], hf[16], pf[16];
		const struct result *r = &m->med;

		if (!m->n)
			continue;
		fmt_count(fps, sizeof(fps), r->faults_per_s);
		if (proxies && m->proxies)
			snprintf(pps, sizeof(pps), "%.2f", r->proxy_ops_per_s);
		else
			snprintf(pps, sizeof(pps), "-");
		/* Share of the proxies' time spent faulting in their own
		 * arenas (the rest: inside their proxy calls). */
		if (proxies && m->proxies && r->proxy_call_s + r->proxy_fault_s > 0)
			snprintf(pf, sizeof(pf), "%.0f%%",
				 100 * r->proxy_fault_s / (r->proxy_call_s + r->proxy_fault_s));
		else
			snprintf(pf, sizeof(pf), "-");
		fmt_ratio(vmin, sizeof(vmin), r->faults_per_s, mn ? mn->med.faults_per_s : 0);
		fmt_ratio(vgl, sizeof(vgl), r->faults_per_s, gl ? gl->med.faults_per_s : 0);
		if (m->mode == M_NATIVE) {
			snprintf(wu, sizeof(wu), "-");
			snprintf(hf, sizeof(hf), "-");
		} else {
			snprintf(wu, sizeof(wu), "%u/%u", r->workers, r->uffds);
			fmt_count(hf, sizeof(hf), (double)r->lib_faults);
		}
		printf("%-8s %3d %3d %10s %10s %9.2f %9.2f %9.2f %8" PRIu64
		       " %7s %9s %8s %8s %6s\n",
		       mode_names[m->mode], m->threads, m->proxies, fps, pps, r->us_mean, r->us_p50,
		       r->us_p99, mode_is_ufault(m->mode) ? r->spec_aborts : 0, wu, hf,
		       m->mode == M_MINIMAL ? "" : vmin, m->mode == M_GLOBAL ? "" : vgl, pf);
		if (r->proxy_fallbacks)
			printf("         (%" PRIu64 " proxy maps fell back to a kernel-chosen "
			       "address: slot was taken)\n",
			       r->proxy_fallbacks);
	}
	if (s->base.wl == W_RESTORE) {
		printf("proxy calls, us (p50 / p99 / max; medians over runs):\n");
		printf("%-8s %3s %3s", "mode", "T", "P");
		for (int k = 0; k <= PO_NR; k++)
			printf(" %23s", k < PO_NR ? proxy_op_names[k] : "all");
		printf("\n");
		for (i = 0; i < s->nr_meas; i++) {
			const struct meas *m = &s->meas[i];

			if (!m->n || !m->proxies)
				continue;
			printf("%-8s %3d %3d", mode_names[m->mode], m->threads, m->proxies);
			for (int k = 0; k <= PO_NR; k++) {
				const struct op_stats *o =
				    k < PO_NR ? &m->med.op[k] : &m->med.op_all;
				char cell[32];

				snprintf(cell, sizeof(cell), "%.0f/%.0f/%.0f", o->us_p50, o->us_p99,
					 o->us_max);
				printf(" %23s", cell);
			}
			printf("\n");
		}
	}
	if (s->base.wl == W_CHECK) {
		printf("per-run us/fault (mean):\n");
		for (i = 0; i < s->nr_meas; i++) {
			const struct meas *m = &s->meas[i];
			int k;

			printf("  %-8s", mode_names[m->mode]);
			for (k = 0; k < m->n; k++)
				printf(" %7.3f", m->r[k].us_mean);
			printf("\n");
		}
	}
	fflush(stdout);
}

static void add_meas(struct section *s, enum mode mode, int threads, int proxies)
{
	struct meas *m;

	s->meas = realloc(s->meas, (size_t)(s->nr_meas + 1) * sizeof(*s->meas));
	if (!s->meas)
		die("out of memory");
	m = &s->meas[s->nr_meas++];
	memset(m, 0, sizeof(*m));
	m->mode = mode;
	m->threads = threads;
	m->proxies = proxies;
}

/*
 * Run every measurement of @s. For each thread count, the runs are the outer
 * loop and the modes the inner one (A B C A B C ...), so slow drift of the
 * machine spreads over all modes instead of biasing one.
 */
void section_free(struct section *s)
{
	free(s->meas);
	free(s);
}

void section_run(struct section *s)
{
	int i, run;

	for (i = 0; i < s->nr_meas;) {
		int j, first = i, threads = s->meas[i].threads;

		while (i < s->nr_meas && s->meas[i].threads == threads)
			i++;
		for (run = 0; run < s->runs; run++)
			for (j = first; j < i; j++) {
				struct meas *m = &s->meas[j];
				struct run_cfg rc = s->base;

				rc.mode = m->mode;
				rc.threads = m->threads;
				rc.proxies = m->proxies;
				run_one(&rc, &m->r[m->n++]);
			}
		for (j = first; j < i; j++) {
			take_median(&s->meas[j]);
			if (opt.json)
				json_result(s, &s->meas[j]);
		}
	}
	if (!opt.json)
		print_table(s);
}

/* ------------------------------------------------------------------ */
/* Plans and verdicts                                                   */
/* ------------------------------------------------------------------ */

struct section *make_section(enum workload wl, const char *name, enum source dsrc,
			     const struct latency *dlat, double dseconds, int druns,
			     const int *dthreads, int ndthreads, const enum mode *dmodes,
			     int ndmodes, int dproxies)
{
	struct section *s = xcalloc(1, sizeof(*s));
	const int *threads = opt.threads_set ? opt.threads : dthreads;
	int nthreads = opt.threads_set ? opt.nr_threads : ndthreads;
	const enum mode *modes = opt.modes_set ? opt.modes : dmodes;
	int nmodes = opt.modes_set ? opt.nr_modes : ndmodes;
	int proxies = workloads[wl].has_proxies ? (opt.proxies >= 0 ? opt.proxies : dproxies) : 0;
	int t, k;

	s->name = name;
	s->base.wl = wl;
	s->base.src = opt.source >= 0 ? (enum source)opt.source : dsrc;
	s->base.lat = opt.dist_set ? opt.lat : *dlat;
	if (opt.latency_set) /* --latency-us: the fixed latency, or exp's mean */
		s->base.lat.us = opt.lat.us;
	s->base.seconds = opt.seconds > 0 ? opt.seconds : dseconds;
	s->base.size = opt.size ? opt.size : workloads[wl].default_size;
	s->base.proxy_size = opt.proxy_size;
	s->base.variant = opt.variant;
	s->runs = opt.runs ? opt.runs : druns;
	s->proxies = proxies;
	if (wl == W_CHECK) {
		static const int one[] = {1};

		threads = one;
		nthreads = 1;
	}
	for (t = 0; t < nthreads; t++) {
		for (k = 0; k < nmodes; k++)
			add_meas(s, modes[k], threads[t], proxies);
		/* spec without proxies, the reference for the proxies' cost */
		if (workloads[wl].has_proxies && proxies > 0)
			for (k = 0; k < nmodes; k++)
				if (modes[k] == M_SPEC)
					add_meas(s, M_SPEC, threads[t], 0);
	}
	return s;
}

void print_header(void)
{
	struct utsname u;

	if (opt.json)
		return;
	if (uname(&u))
		die("uname: %s", strerror(errno));
	printf("fault_storm: ufault %d.%d.%d, kernel %s %s, %u online CPUs, page %ld B, "
	       "THP %s\n",
	       UFAULT_VERSION_MAJOR, UFAULT_VERSION_MINOR, UFAULT_VERSION_PATCH, u.release,
	       u.machine, nr_cpus, page_size,
	       thp_always ? "always (NOHUGEPAGE on baselines)" : "not always");
	printf("pinned: %s; timer slack 1 ns (so a 50 us fill sleeps ~50 us, not 100)\n",
	       opt.pin ? "yes, every thread on CPU 0 (workers inherit it)" : "no");
	printf("workers/uffds: zero and async sources -> %s; slow source -> %s\n",
	       opt.workers || opt.uffds ? "as --workers/--uffds say"
					: "ufault defaults (1 worker, 1 uffd)",
	       opt.workers || opt.uffds ? "as --workers/--uffds say"
					: "nr_workers = nr_uffds = max(fault threads, CPUs)");
	printf("minimal: one handler thread, poll -> read 1 msg -> zero: UFFDIO_COPY of a zeroed "
	       "page on a write fault (UFFDIO_ZEROPAGE on a read), as ufault; slow: sleep + "
	       "UFFDIO_COPY; EEXIST = resolved (+UFFDIO_WAKE)\n");
	printf("us/f mean = T x elapsed / faults (per-thread time per fault); p50/p99 from "
	       "per-thread histograms of each first write, clock read before and after\n");
	printf("proxy ops/s = proxy calls of whole cycles over their time (mixed: ufault_mmap + "
	       "ufault_munmap;\n  restore: mmap, mprotect x2, madvise, munmap); prx fl = share of "
	       "the proxies' time spent\n  faulting in their own arenas (the rest is in their "
	       "calls); aborts = sum of ufault_stats().spec_aborts[];\n"
	       "hndl flts = faults the handler reported; vs min / vs glob = faults/s ratio "
	       "(higher is better)\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Verdicts                                                             */
/* ------------------------------------------------------------------ */

enum metric { MET_US_MEAN, MET_FAULTS_PER_S, MET_PROXY_P99 };
static const char *const metric_names[] = {"us/fault", "faults/s", "proxy-call p99"};

#define SECTION_P (-1) /* the section's proxy count */

/*
 * One claim: metric(a) / metric(b) compared with target, for each thread
 * count the section of @wl measured. @extra: not part of the default
 * plan's verdicts (shown when the workload is asked for by name).
 */
struct verdict_def {
	enum workload wl;
	enum metric metric;
	enum mode a;
	int a_proxies;
	enum mode b;
	int b_proxies;
	bool at_most; /* a/b <= target, else >= */
	double target;
	bool extra;
	const char *what;
};

static const struct verdict_def verdict_table[] = {
    {W_CHECK, MET_US_MEAN, M_SPEC, 0, M_MINIMAL, 0, true, 1.15, false,
     "ufault(spec) us/fault / minimal handler"},
    {W_RESTORE, MET_FAULTS_PER_S, M_SPEC, SECTION_P, M_GLOBAL, SECTION_P, false, 3.0, false,
     "spec faults/s / global"},
    {W_RESTORE, MET_PROXY_P99, M_SPEC, SECTION_P, M_GLOBAL, SECTION_P, true, 0.1, false,
     "spec proxy-call p99 / global"},
    {W_RESTORE, MET_FAULTS_PER_S, M_SPEC, SECTION_P, M_SPEC, 0, false, 0.9, false,
     "spec faults/s with proxies / without"},
    /* mixed: nothing contends (zero-source arenas beside the regions):
     * the modes should cost the same, and the proxies little. */
    {W_MIXED, MET_FAULTS_PER_S, M_SPEC, SECTION_P, M_GLOBAL, SECTION_P, false, 0.9, true,
     "spec faults/s / global"},
    {W_MIXED, MET_FAULTS_PER_S, M_SPEC, SECTION_P, M_SPEC, 0, false, 0.8, true,
     "spec faults/s with proxies / without"},
};

static double metric_of(const struct result *r, enum metric mt)
{
	switch (mt) {
	case MET_US_MEAN:
		return r->us_mean;
	case MET_FAULTS_PER_S:
		return r->faults_per_s;
	case MET_PROXY_P99:
		return r->op_all.n ? r->op_all.us_p99 : 0;
	}
	return 0;
}

static void verdict_line(const char *text, double measured, bool at_most, double target, bool have)
{
	const char *op = at_most ? "<=" : ">=";
	bool pass = have && (at_most ? measured <= target : measured >= target);

	if (opt.json) {
		printf("{\"verdict\":\"%s\",\"measured\":%.4f,\"op\":\"%s\",\"target\":%.4f,"
		       "\"result\":\"%s\"}\n",
		       text, have ? measured : 0.0, op, target,
		       !have  ? "SKIP"
		       : pass ? "PASS"
			      : "FAIL");
		return;
	}
	if (!have)
		printf("%s: not measured in this run: SKIP\n", text);
	else
		printf("%s = %.3f (target %s %.2f): %s\n", text, measured, op, target,
		       pass ? "PASS" : "FAIL");
}

static void section_label(const struct section *s, char *buf, size_t n)
{
	const struct run_cfg *b = &s->base;
	char lat[96] = "", wl[48];

	if (b->src != S_ZERO)
		latency_describe(&b->lat, lat, sizeof(lat));
	if (b->wl == W_MIXED)
		snprintf(wl, sizeof(wl), "mixed(%s)", variant_names[b->variant]);
	else
		snprintf(wl, sizeof(wl), "%s", workloads[b->wl].name);
	snprintf(buf, n, "%s %s%s%s", wl, src_names[b->src], *lat ? " " : "", lat);
}

static void verdict_rows(const struct verdict_def *v, const struct section *s)
{
	int seen[MAX_LIST], nseen = 0;

	for (int i = 0; i < s->nr_meas; i++) {
		int th = s->meas[i].threads, k;
		int pa = v->a_proxies == SECTION_P ? s->proxies : v->a_proxies;
		int pb = v->b_proxies == SECTION_P ? s->proxies : v->b_proxies;
		const struct meas *a, *b;
		char label[160], text[320];
		double va, vb;
		bool have;

		for (k = 0; k < nseen && seen[k] != th; k++)
			;
		if (k < nseen || nseen == MAX_LIST)
			continue;
		seen[nseen++] = th;
		a = find_meas(s, v->a, th, pa);
		b = find_meas(s, v->b, th, pb);
		va = a ? metric_of(&a->med, v->metric) : 0;
		vb = b ? metric_of(&b->med, v->metric) : 0;
		/* Comparing a run with itself says nothing (no proxies asked). */
		have = a && b && a != b && vb > 0 && va > 0;
		section_label(s, label, sizeof(label));
		snprintf(text, sizeof(text), "%s T=%d P=%d: %s (%s %.4g / %.4g, median of %d)",
			 label, th, s->proxies, v->what, metric_names[v->metric], va, vb, s->runs);
		verdict_line(text, have ? va / vb : 0, v->at_most, v->target, have);
	}
}

void print_verdicts(struct section *const *sections, int n, bool default_plan)
{
	const struct section *check = NULL;

	if (!opt.json)
		printf("\n== verdicts ==\n");
	for (size_t i = 0; i < sizeof(verdict_table) / sizeof(verdict_table[0]); i++) {
		const struct verdict_def *v = &verdict_table[i];

		if (v->extra && default_plan)
			continue;
		for (int j = 0; j < n; j++)
			if (sections[j]->base.wl == v->wl)
				verdict_rows(v, sections[j]);
	}
	for (int j = 0; j < n; j++)
		if (sections[j]->base.wl == W_CHECK)
			check = sections[j];
	if (check && !opt.json) {
		const struct meas *sp = find_meas(check, M_SPEC, 1, 0);
		const struct meas *mn = find_meas(check, M_MINIMAL, 1, 0);
		const struct meas *nt = find_meas(check, M_NATIVE, 1, 0);

		if (sp && nt)
			printf("  (for reference: ufault(spec) us/fault = %.2fx native %.3f us, "
			       "minimal = %.2fx native; p50 spec %.2f / minimal %.2f / native %.2f "
			       "us)\n",
			       sp->med.us_mean / nt->med.us_mean, nt->med.us_mean,
			       mn ? mn->med.us_mean / nt->med.us_mean : 0, sp->med.us_p50,
			       mn ? mn->med.us_p50 : 0, nt->med.us_p50);
	}
	fflush(stdout);
}
