/* report.c — turn bench/out/raw.tsv into the tables of bench/RESULTS.md.
 *
 * Computes, per workload and allocator, the median wall time and median peak
 * RSS over the repetitions (medians, because a single descheduled run on a
 * 2-core box should not move the result), the ratios against glibc and
 * mimalloc, and per allocator the geometric mean over workloads of its
 * time/RSS ratio against each peer.  Geometric means are the right average
 * for ratios: a 2x win and a 2x loss cancel.  A workload in which either side
 * of a ratio has no successful run is left out of that geometric mean and
 * the count of workloads used is printed next to it.  Written in C so the
 * harness needs nothing beyond a C compiler and a POSIX shell.
 *
 * input (tab separated, first line is a header):
 *   workload alloc rep wall_s maxrss_kib rss_end_kib inner_s user_s sys_s status
 * usage: report raw.tsv > tables.md
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXW 32
#define MAXA 16
#define MAXR 256

typedef struct {
    double wall[MAXR], rss[MAXR], end[MAXR], cpu[MAXR];
    int n, fails;
    char failwhy[64];
} cell_t;

static char wname[MAXW][64], aname[MAXA][64];
static int nw, na;
static cell_t cell[MAXW][MAXA];

static int intern(char names[][64], int *n, int max, const char *s)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(names[i], s) == 0) return i;
    if (*n >= max) return -1;
    snprintf(names[*n], 64, "%s", s);
    return (*n)++;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double t[MAXR];
    if (n <= 0) return NAN;
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmpd);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static double vmin(const double *v, int n)
{ double m = INFINITY; for (int i = 0; i < n; i++) if (v[i] < m) m = v[i]; return m; }
static double vmax(const double *v, int n)
{ double m = -INFINITY; for (int i = 0; i < n; i++) if (v[i] > m) m = v[i]; return m; }

static int find(const char *s)
{
    for (int i = 0; i < na; i++) if (strcmp(aname[i], s) == 0) return i;
    return -1;
}

static double med_wall(int w, int a) { return a < 0 ? NAN : median(cell[w][a].wall, cell[w][a].n); }
static double med_rss(int w, int a)  { return a < 0 ? NAN : median(cell[w][a].rss, cell[w][a].n); }
static double med_cpu(int w, int a)  { return a < 0 ? NAN : median(cell[w][a].cpu, cell[w][a].n); }

/* metric 0 = wall time, 1 = peak RSS, 2 = CPU time (user + sys) */
static double med(int w, int a, int metric)
{
    return metric == 1 ? med_rss(w, a) : metric == 2 ? med_cpu(w, a) : med_wall(w, a);
}

static void ratio(double x, double y)
{
    if (isnan(x) || isnan(y) || y <= 0) printf(" – |");
    else printf(" %.2f |", x / y);
}

/* geometric mean over workloads of metric(a)/metric(b) */
static void geo(int a, int b, int metric)
{
    double s = 0;
    int k = 0;
    if (a < 0 || b < 0) { printf(" n/a |"); return; }
    for (int w = 0; w < nw; w++) {
        double x = med(w, a, metric), y = med(w, b, metric);
        if (isnan(x) || isnan(y) || x <= 0 || y <= 0) continue;
        s += log(x / y);
        k++;
    }
    if (k == 0) printf(" n/a |");
    else if (k == nw) printf(" %.2f |", exp(s / k));
    else printf(" %.2f (%d/%d) |", exp(s / k), k, nw);
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: report raw.tsv\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        if (lineno++ == 0 && strncmp(line, "workload", 8) == 0) continue;
        char wl[64], al[64], st[64];
        int rep;
        double wall, rss, end, inner, us, ss;
        if (sscanf(line, "%63s %63s %d %lf %lf %lf %lf %lf %lf %63s",
                   wl, al, &rep, &wall, &rss, &end, &inner, &us, &ss, st) != 10)
            continue;
        int w = intern(wname, &nw, MAXW, wl), a = intern(aname, &na, MAXA, al);
        if (w < 0 || a < 0) continue;
        cell_t *c = &cell[w][a];
        if (strcmp(st, "ok") != 0) {
            c->fails++;
            snprintf(c->failwhy, sizeof c->failwhy, "%s", st);
            continue;
        }
        if (c->n >= MAXR) continue;
        c->wall[c->n] = wall;
        c->rss[c->n] = rss / 1024.0;
        c->end[c->n] = end / 1024.0;
        c->cpu[c->n] = us + ss;
        c->n++;
    }
    fclose(f);

    int g = find("glibc"), mi = find("mimalloc"), je = find("jemalloc"), tc = find("tcmalloc");

    printf("## Summary\n\n");
    printf("Geometric mean over workloads of the ratio of medians (this allocator / peer): "
           "wall time, peak RSS, and CPU time (user + sys, less sensitive to other load "
           "on the machine); < 1 means faster (smaller). "
           "`(k/n)` = only k of n workloads had successful runs on both sides.\n\n");
    printf("| allocator | time vs glibc | time vs jemalloc | time vs tcmalloc | time vs mimalloc "
           "| peak RSS vs glibc | CPU time vs glibc | workloads ok |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int a = 0; a < na; a++) {
        int ok = 0;
        for (int w = 0; w < nw; w++) ok += cell[w][a].n > 0;
        printf("| %s |", aname[a]);
        geo(a, g, 0); geo(a, je, 0); geo(a, tc, 0); geo(a, mi, 0); geo(a, g, 1); geo(a, g, 2);
        printf(" %d/%d |\n", ok, nw);
    }

    printf("\n## Median wall time (s) at a glance\n\n| workload |");
    for (int a = 0; a < na; a++) printf(" %s |", aname[a]);
    printf("\n|---|");
    for (int a = 0; a < na; a++) printf("---:|");
    printf("\n");
    for (int w = 0; w < nw; w++) {
        printf("| %s |", wname[w]);
        for (int a = 0; a < na; a++) {
            if (cell[w][a].n) printf(" %.3f |", med_wall(w, a));
            else printf(" FAIL |");
        }
        printf("\n");
    }
    printf("\n## Median peak RSS (MiB) at a glance\n\n| workload |");
    for (int a = 0; a < na; a++) printf(" %s |", aname[a]);
    printf("\n|---|");
    for (int a = 0; a < na; a++) printf("---:|");
    printf("\n");
    for (int w = 0; w < nw; w++) {
        printf("| %s |", wname[w]);
        for (int a = 0; a < na; a++) {
            if (cell[w][a].n) printf(" %.1f |", med_rss(w, a));
            else printf(" FAIL |");
        }
        printf("\n");
    }

    printf("\n## Per workload\n");
    for (int w = 0; w < nw; w++) {
        printf("\n### %s\n\n", wname[w]);
        printf("| allocator | time median (s) | time min–max (s) | peak RSS median (MiB) "
               "| time vs glibc | time vs mimalloc | RSS vs glibc | RSS after free (MiB) "
               "| CPU median (s) | runs ok |\n");
        printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int a = 0; a < na; a++) {
            cell_t *c = &cell[w][a];
            printf("| %s |", aname[a]);
            if (c->n == 0) {
                printf(" FAIL (%s) | | | | | | | | 0/%d |\n", c->failwhy, c->fails);
                continue;
            }
            double t = med_wall(w, a), r = med_rss(w, a);
            printf(" %.3f | %.3f–%.3f | %.1f |", t, vmin(c->wall, c->n), vmax(c->wall, c->n), r);
            ratio(t, med_wall(w, g));
            ratio(t, med_wall(w, mi));
            ratio(r, med_rss(w, g));
            printf(" %.1f | %.3f |", median(c->end, c->n), med_cpu(w, a));
            if (c->fails) printf(" %d/%d (%s) |\n", c->n, c->n + c->fails, c->failwhy);
            else printf(" %d/%d |\n", c->n, c->n);
        }
    }
    return 0;
}
