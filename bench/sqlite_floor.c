/*
 * The floor of any importer that keeps the journal pysens keeps: the rows a `sens import`
 * writes, already built, inserted into the same schema with the same settings from C, with
 * no Python at all. bench_wtmp.py compiles and runs it (gcc -O2 ... -lsqlite3).
 *
 * usage: sqlite_floor DB ROWS SCHEMA BATCH INSERT
 *   DB      a journal path that does not exist yet
 *   ROWS    rows as bench_wtmp.py writes them: per row a uint32 column count, then per column
 *           a one-byte tag (0 NULL, 1 int64, 2 text, 3 blob) and the value (int64; or a
 *           uint32 length and that many bytes); native byte order
 *   SCHEMA  SQL run first: the journal's schema (and its dictionary rows)
 *   BATCH   rows per transaction, as the importer journals them
 *   INSERT  the INSERT statement, one ? per column
 *
 * Each transaction does what Journal._append does for a fresh import: BEGIN IMMEDIATE, read
 * the last seq and the highest id, insert the rows (the history mark is a bit of their flags),
 * COMMIT. Prints the seconds from opening the database to the last commit. Reading ROWS into
 * memory is not timed.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    unsigned char tag;
    int64_t i;
    const char *p;
    int len;
} value_t;

typedef struct {
    int n;
    value_t *v;
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
    if (argc != 6) {
        fprintf(stderr, "usage: sqlite_floor DB ROWS SCHEMA BATCH INSERT\n");
        return 2;
    }
    long size, schema_size;
    char *data = slurp(argv[2], &size);
    char *schema = slurp(argv[3], &schema_size);
    int batch = atoi(argv[4]);

    size_t cap = 1024, n = 0;
    row_t *rows = malloc(cap * sizeof *rows);
    for (char *p = data; p < data + size; n++) {
        if (n == cap) rows = realloc(rows, (cap *= 2) * sizeof *rows);
        uint32_t cols;
        memcpy(&cols, p, 4); p += 4;
        rows[n].n = (int)cols;
        rows[n].v = malloc(cols * sizeof(value_t));
        for (uint32_t k = 0; k < cols; k++) {
            value_t *v = &rows[n].v[k];
            v->tag = (unsigned char)*p++;
            if (v->tag == 1) { memcpy(&v->i, p, 8); p += 8; }
            else if (v->tag >= 2) {
                uint32_t len;
                memcpy(&len, p, 4); p += 4;
                v->p = p; v->len = (int)len; p += len;
            }
        }
    }

    double start = now();
    sqlite3 *db;
    check(db, sqlite3_open(argv[1], &db), "open");
    check(db, sqlite3_exec(db, "PRAGMA auto_vacuum=INCREMENTAL", 0, 0, 0), "auto_vacuum");
    check(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", 0, 0, 0), "wal");
    check(db, sqlite3_exec(db, "PRAGMA synchronous=NORMAL", 0, 0, 0), "synchronous");
    check(db, sqlite3_exec(db, schema, 0, 0, 0), "schema");
    sqlite3_stmt *ins, *top, *maxid;
    check(db, sqlite3_prepare_v2(db, argv[5], -1, &ins, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE "
          "name = 'events'), 0)", -1, &top, 0), "prepare");
    check(db, sqlite3_prepare_v2(db, "SELECT max(id) FROM events", -1, &maxid, 0), "prepare");
    for (size_t first = 0; first < n; first += (size_t)batch) {
        size_t last = first + (size_t)batch < n ? first + (size_t)batch : n;
        check(db, sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0), "begin");
        check(db, sqlite3_step(top), "last seq");
        sqlite3_reset(top);
        check(db, sqlite3_step(maxid), "max(id)");
        sqlite3_reset(maxid);
        for (size_t i = first; i < last; i++) {
            const row_t *r = &rows[i];
            for (int k = 0; k < r->n; k++) {
                const value_t *v = &r->v[k];
                if (v->tag == 0) sqlite3_bind_null(ins, k + 1);
                else if (v->tag == 1) sqlite3_bind_int64(ins, k + 1, v->i);
                else if (v->tag == 2) sqlite3_bind_text(ins, k + 1, v->p, v->len, SQLITE_STATIC);
                else sqlite3_bind_blob(ins, k + 1, v->p, v->len, SQLITE_STATIC);
            }
            check(db, sqlite3_step(ins), "insert");
            sqlite3_reset(ins);
        }
        check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(top);
    sqlite3_finalize(maxid);
    check(db, sqlite3_close(db), "close");
    printf("%.6f\n", now() - start);
    return 0;
}
