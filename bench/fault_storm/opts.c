// SPDX-License-Identifier: MIT
/*
 * opts.c - fault_storm's command line: struct opts, --help, parsing.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_storm.h"

const char *const src_names[S_NR] = {"zero", "slow", "async"};
const char *const variant_names[2] = {"adjacent", "same"};

struct opts opt = {
    .proxies = -1,
    .source = -1,
    .lat = {.dist = LD_FIXED, .us = 50},
    .proxy_size = 16ul << 20,
    .variant = V_ADJACENT,
};

unsigned int nr_cpus;

/* fixed | exp | bimodal[:FAST_US:SLOW_US:SLOW_PERMILLE] */
static void parse_dist(const char *arg)
{
	unsigned int fast = 100, slow = 5000, permille = 50;
	char tail;

	if (!strcmp(arg, "fixed")) {
		opt.lat.dist = LD_FIXED;
	} else if (!strcmp(arg, "exp")) {
		opt.lat.dist = LD_EXP;
	} else if (!strcmp(arg, "bimodal") ||
		   (sscanf(arg, "bimodal:%u:%u:%u%c", &fast, &slow, &permille, &tail) == 3 &&
		    !strncmp(arg, "bimodal:", 8))) {
		if (permille > 1000 || fast > 10000000 || slow > 10000000)
			bad_usage("bad latency distribution '%s'", arg);
		opt.lat.dist = LD_BIMODAL;
		opt.lat.fast_us = fast;
		opt.lat.slow_us = slow;
		opt.lat.slow_permille = permille;
	} else {
		bad_usage("unknown latency distribution '%s' (fixed, exp, bimodal[:F:S:P])", arg);
	}
	opt.dist_set = true;
}

void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: fault_storm [options]\n"
	    "With no --workload, runs the default plan (< 2 min on 2 CPUs):\n"
	    "  1. pft, zero source, modes spec,region,range,global,minimal,native,\n"
	    "     threads 1,2,4,8,16, 0.5 s each\n"
	    "  2. check: pft T=1 spec vs minimal vs native, median of 5 interleaved runs\n"
	    "  3. restore: async source, bimodal latency (95%% 100 us, 5%% 5 ms), 8 fault\n"
	    "     threads, 2 proxies, the four ufault modes plus spec with 0 proxies;\n"
	    "     3 runs of 2 s\n"
	    "  4. mixed (adjacent), slow 50 us source, 8 fault threads, 2 proxies,\n"
	    "     the four ufault modes, plus spec with 0 proxies; 3 runs of 1 s\n"
	    "  then the verdicts (report.c's table).\n"
	    "\n"
	    "  --workload LIST     pft,check,page_fault1,ebizzy,mixed,restore (or 'default')\n"
	    "  --modes LIST        spec,region,range,global,minimal,native (default all)\n"
	    "  --threads LIST      fault threads (default 1,2,4,8,16; mixed in the default plan "
	    "8)\n"
	    "  --proxies M         mixed, restore: proxy threads (default 2); others: 0\n"
	    "  --mixed-variant V   adjacent (proxies churn slots beside the fault regions)\n"
	    "                      or same (proxies MAP_FIXED over slices of them)\n"
	    "  --source S          zero, slow (a fill that sleeps the latency) or async (an\n"
	    "                      asynchronous fill completed after the latency; the minimal\n"
	    "                      handler sleeps instead) (default zero; mixed: slow;\n"
	    "                      restore: async)\n"
	    "  --latency-dist D    fixed (--latency-us each), exp (exponential, mean\n"
	    "                      --latency-us) or bimodal[:FAST_US:SLOW_US:SLOW_PERMILLE]\n"
	    "                      (default fixed; restore: bimodal:100:5000:50)\n"
	    "  --latency-us N      slow source fill latency, slept not spun (default 50)\n"
	    "  --seconds X         seconds per measurement (default 1; default plan: see above)\n"
	    "  --size N[KMG]       per-thread region (pft/check 8M, page_fault1 128M,\n"
	    "                      ebizzy 512K, mixed 4M, restore 64M)\n"
	    "  --proxy-size N      mixed: proxy arena size (default 16M)\n"
	    "  --runs N            repetitions, median reported (default 1, check 5)\n"
	    "  --workers N         ufault nr_workers (default: the library's, 1 per uffd;\n"
	    "                      slow source: max(T, CPUs))\n"
	    "  --uffds N           ufault nr_uffds (default: 1; slow source: = workers)\n"
	    "  --fault-around N[K|M]  ufault fault_around_max: sequential faults install\n"
	    "                      windows growing up to N (default 0: one page per fault,\n"
	    "                      as the minimal handler)\n"
	    "  --pin               pin every thread (ufault workers too) to CPU 0\n"
	    "  --json              one JSON object per line instead of tables\n"
	    "  --help\n");
}

static void add_workload(const char *s)
{
	int i;

	if (!strcmp(s, "default") || !strcmp(s, "all")) {
		opt.workloads_set = false;
		return;
	}
	for (i = 0; i < W_NR; i++)
		if (!strcmp(s, workloads[i].name))
			break;
	if (i == W_NR)
		bad_usage("unknown workload '%s'", s);
	if (opt.nr_workloads < W_NR)
		opt.workloads[opt.nr_workloads++] = (enum workload)i;
	opt.workloads_set = true;
}

static void add_mode(const char *s)
{
	int i = bench_lookup(s, mode_names, M_NR);

	if (i < 0)
		bad_usage("unknown mode '%s'", s);
	if (opt.nr_modes >= M_NR)
		bad_usage("too many modes");
	opt.modes[opt.nr_modes++] = (enum mode)i;
}

static void add_threads(const char *s)
{
	if (opt.nr_threads >= MAX_LIST)
		bad_usage("at most %d thread counts", MAX_LIST);
	opt.threads[opt.nr_threads++] = (int)parse_long(s, "thread count", 1, 1024);
}

void parse_args(int argc, char **argv)
{
	enum {
		O_WL = 256,
		O_MODES,
		O_THREADS,
		O_PROXIES,
		O_VARIANT,
		O_SOURCE,
		O_LAT,
		O_DIST,
		O_SECS,
		O_SIZE,
		O_PSIZE,
		O_RUNS,
		O_WORKERS,
		O_UFFDS,
		O_FAULT_AROUND,
		O_PIN,
		O_JSON
	};
	static const struct option lo[] = {
	    {"workload", required_argument, NULL, O_WL},
	    {"modes", required_argument, NULL, O_MODES},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"proxies", required_argument, NULL, O_PROXIES},
	    {"mixed-variant", required_argument, NULL, O_VARIANT},
	    {"source", required_argument, NULL, O_SOURCE},
	    {"latency-us", required_argument, NULL, O_LAT},
	    {"latency-dist", required_argument, NULL, O_DIST},
	    {"seconds", required_argument, NULL, O_SECS},
	    {"size", required_argument, NULL, O_SIZE},
	    {"proxy-size", required_argument, NULL, O_PSIZE},
	    {"runs", required_argument, NULL, O_RUNS},
	    {"workers", required_argument, NULL, O_WORKERS},
	    {"uffds", required_argument, NULL, O_UFFDS},
	    {"fault-around", required_argument, NULL, O_FAULT_AROUND},
	    {"pin", no_argument, NULL, O_PIN},
	    {"json", no_argument, NULL, O_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case O_WL:
			parse_list(optarg, add_workload);
			break;
		case O_MODES:
			opt.nr_modes = 0;
			parse_list(optarg, add_mode);
			opt.modes_set = opt.nr_modes > 0;
			break;
		case O_THREADS:
			opt.nr_threads = 0;
			parse_list(optarg, add_threads);
			opt.threads_set = opt.nr_threads > 0;
			break;
		case O_PROXIES:
			opt.proxies = (int)parse_long(optarg, "proxy count", 0, 256);
			break;
		case O_VARIANT:
			if (!strcmp(optarg, "adjacent"))
				opt.variant = V_ADJACENT;
			else if (!strcmp(optarg, "same"))
				opt.variant = V_SAME;
			else
				bad_usage("unknown mixed variant '%s'", optarg);
			break;
		case O_SOURCE:
			if (!strcmp(optarg, "zero"))
				opt.source = S_ZERO;
			else if (!strcmp(optarg, "slow"))
				opt.source = S_SLOW;
			else if (!strcmp(optarg, "async"))
				opt.source = S_ASYNC;
			else
				bad_usage("unknown source '%s'", optarg);
			break;
		case O_LAT:
			opt.lat.us = (unsigned int)parse_long(optarg, "latency", 0, 10000000);
			opt.latency_set = true;
			break;
		case O_DIST:
			parse_dist(optarg);
			break;
		case O_SECS: {
			char *end;

			opt.seconds = strtod(optarg, &end);
			if (end == optarg || *end || !(opt.seconds > 0) || opt.seconds > 3600)
				bad_usage("bad seconds '%s'", optarg);
			break;
		}
		case O_SIZE:
			opt.size = parse_size(optarg, "size");
			break;
		case O_PSIZE:
			opt.proxy_size = parse_size(optarg, "proxy size");
			break;
		case O_RUNS:
			opt.runs = (int)parse_long(optarg, "runs", 1, MAX_RUNS);
			break;
		case O_WORKERS:
			opt.workers = (unsigned int)parse_long(optarg, "workers", 1, 4096);
			break;
		case O_FAULT_AROUND:
			opt.fault_around = parse_size(optarg, "fault-around window");
			break;
		case O_UFFDS:
			opt.uffds = (unsigned int)parse_long(optarg, "uffds", 1, 4096);
			break;
		case O_PIN:
			opt.pin = true;
			break;
		case O_JSON:
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
}
