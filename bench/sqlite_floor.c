/*
 * The floor of any importer that keeps the journal pysens keeps: the rows a `sens import`
 * writes, already built, inserted into the same schema with the same settings from C, with
 * no Python at all. bench_wtmp.py compiles and runs it (gcc -O2 ... -lsqlite3).
 *
 * usage: sqlite_floor DB ROWS SCHEMA BATCH
 *   DB      a journal path that does not exist yet
 *   ROWS    rows as bench_wtmp.py writes them: per row int64 seq, int64 time_us, then id, host,
 *           method, user_name, session_id, body, each a uint32 length (0xffffffff: NULL) and
 *           that many bytes; native byte order
 *   SCHEMA  the journal's schema (every migration, as SQL)
 *   BATCH   rows per transaction, as the importer journals them
 *
 * bench_wtmp.py also runs it on a lean schema (no body, no time index) for the least any
 * idempotent SQLite journal of these events could cost.
 *
 * Each transaction does what Journal._append does for a fresh import: BEGIN IMMEDIATE, read
 * max(seq), insert the rows, mark their seqs as history, COMMIT. Prints the seconds from
 * opening the database to the last commit. Reading ROWS into memory is not timed.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t seq, time_us;
    const char *text[6];
    int len[6]; /* -1: NULL */
} row_t;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *slurp(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)*size + 1);
    if (!buf || fread(buf, 1, (size_t)*size, f) != (size_t)*size) { perror(path); exit(2); }
    buf[*size] = 0;
    fclose(f);
    return buf;
}

static void check(sqlite3 *db, int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: sqlite_floor DB ROWS SCHEMA BATCH\n"); return 2; }
    long size, schema_size;
    char *data = slurp(argv[2], &size);
    char *schema = slurp(argv[3], &schema_size);
    int batch = atoi(argv[4]);

    size_t cap = 1024, n = 0;
    row_t *rows = malloc(cap * sizeof *rows);
    for (char *p = data; p < data + size; n++) {
        if (n == cap) rows = realloc(rows, (cap *= 2) * sizeof *rows);
        memcpy(&rows[n].seq, p, 8); p += 8;
        memcpy(&rows[n].time_us, p, 8); p += 8;
        for (int k = 0; k < 6; k++) {
            uint32_t len;
            memcpy(&len, p, 4); p += 4;
            rows[n].text[k] = p;
            rows[n].len[k] = len == 0xffffffffu ? -1 : (int)len;
            if (len != 0xffffffffu) p += len;
        }
    }

    double start = now();
    sqlite3 *db;
    check(db, sqlite3_open(argv[1], &db), "open");
    check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", 0, 0, 0), "wal");
    check(db, sqlite3_exec(db, "PRAGMA synchronous=NORMAL", 0, 0, 0), "synchronous");
    check(db, sqlite3_exec(db, schema, 0, 0, 0), "schema");
    sqlite3_stmt *ins, *hist, *top;
    check(db, sqlite3_prepare_v2(db, "INSERT INTO events(seq, id, time_us, host, method, user_name,"
          " session_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", -1, &ins, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO history(seq) VALUES (?)", -1, &hist, 0),
          "prepare");
    check(db, sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) FROM events", -1, &top, 0),
          "prepare");
    for (size_t first = 0; first < n; first += (size_t)batch) {
        size_t last = first + (size_t)batch < n ? first + (size_t)batch : n;
        check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        check(db, sqlite3_step(top), "max(seq)");
        sqlite3_reset(top);
        for (size_t i = first; i < last; i++) {
            const row_t *r = &rows[i];
            sqlite3_bind_int64(ins, 1, r->seq);
            sqlite3_bind_int64(ins, 3, r->time_us);
            static const int column[6] = {2, 4, 5, 6, 7, 8};
            for (int k = 0; k < 6; k++) {
                if (r->len[k] < 0) sqlite3_bind_null(ins, column[k]);
                else sqlite3_bind_text(ins, column[k], r->text[k], r->len[k], SQLITE_STATIC);
            }
            check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
            sqlite3_bind_int64(hist, 1, r->seq);
            check(db, sqlite3_step(hist), "history");
            sqlite3_reset(hist);
        }
        check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(hist);
    sqlite3_finalize(top);
    check(db, sqlite3_close(db), "close");
    printf("%.6f\n", now() - start);
    return 0;
}
