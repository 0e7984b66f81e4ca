// SPDX-License-Identifier: MIT
/*
 * fault_storm.c - ufault's headline benchmark: T threads fault in pages
 * while (optionally) proxy threads call mmap-family functions beside them,
 * measured in one process against three kinds of handler (backend.c): the
 * four ufault lock modes, a minimal hand-written userfaultfd handler, and
 * native kernel faults. main() runs the default plan, or the workloads the
 * command line names, then the verdicts (report.c). The files of this
 * directory are listed in fault_storm.h.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "fault_storm.h"

int main(int argc, char **argv)
{
	static const int all_threads[] = {1, 2, 4, 8, 16};
	static const int eight[] = {8};
	static const enum mode all_modes[] = {M_SPEC,	M_REGION,  M_RANGE,
					      M_GLOBAL, M_MINIMAL, M_NATIVE};
	static const enum mode check_modes[] = {M_SPEC, M_MINIMAL, M_NATIVE};
	/* The restore workload's default: remote storage, mostly fast. */
	static const struct latency bimodal = {
	    .dist = LD_BIMODAL, .us = 50, .fast_us = 100, .slow_us = 5000, .slow_permille = 50};
	static const struct latency fixed50 = {.dist = LD_FIXED, .us = 50};
	struct section *run[W_NR + 4];
	uint64_t t0 = now_ns();
	int nrun = 0;
	long ncpu;

	page_size = sysconf(_SC_PAGESIZE);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (page_size <= 0 || ncpu <= 0)
		die("sysconf: %s", strerror(errno));
	nr_cpus = (unsigned int)ncpu;
	hist_setup();
	parse_args(argc, argv);
	thp_always = thp_is_always();

	/* Inherited by every thread created later, ufault's workers included. */
	if (prctl(PR_SET_TIMERSLACK, 1ul, 0ul, 0ul, 0ul))
		die("prctl(PR_SET_TIMERSLACK): %s", strerror(errno));
	if (opt.pin) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(0, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("sched_setaffinity(CPU 0): %s", strerror(errno));
	}
	print_header();

	if (!opt.workloads_set) {
		bool ms = opt.modes_set;

		run[nrun++] = make_section(W_PFT, "pft", S_ZERO, &fixed50, 0.5, 1, all_threads, 5,
					   all_modes, 6, 0);
		/* The key check keeps its three modes even if --modes narrowed the rest. */
		opt.modes_set = false;
		run[nrun++] = make_section(W_CHECK, "check", S_ZERO, &fixed50, 0.5, 5, all_threads,
					   1, check_modes, 3, 0);
		opt.modes_set = ms;
		run[nrun++] = make_section(W_RESTORE, "restore", S_ASYNC, &bimodal, 2.0, 3, eight,
					   1, all_modes, 4, 2);
		run[nrun++] = make_section(W_MIXED, "mixed", S_SLOW, &fixed50, 1.0, 3, eight, 1,
					   all_modes, 4, 2);
	} else {
		for (int i = 0; i < opt.nr_workloads; i++) {
			enum workload wl = opt.workloads[i];
			const struct workload_def *d = &workloads[wl];

			if (wl == W_CHECK)
				run[nrun++] = make_section(wl, "check", S_ZERO, &fixed50, 1, 5,
							   all_threads, 1, check_modes, 3, 0);
			else
				run[nrun++] = make_section(
				    wl, d->name, d->default_src,
				    wl == W_RESTORE ? &bimodal : &fixed50, wl == W_RESTORE ? 2 : 1,
				    1, wl == W_RESTORE ? eight : all_threads,
				    wl == W_RESTORE ? 1 : 5, all_modes, d->has_proxies ? 4 : 6, 2);
		}
	}
	for (int i = 0; i < nrun; i++)
		section_run(run[i]);
	print_verdicts(run, nrun, !opt.workloads_set);
	for (int i = 0; i < nrun; i++)
		section_free(run[i]);
	if (!opt.json)
		printf("\nwall time %.1f s\n", (double)(now_ns() - t0) / 1e9);
	return 0;
}
