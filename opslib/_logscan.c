/*
 * opslib native field scanner: the per-line work of opslib.logparse, in one pass over each line.
 *
 * Input: a batch of Docker json-file lines and, per line, the span [start, end) of its "log"
 * value, still JSON-escaped (an inner JSON quote reads \" there, a quote inside an inner string
 * \\\"). In lines starting with "{", it finds:
 *
 *   level    the first match of  (?:level|severity)\" ?: ?\"([A-Za-z]+)
 *   status   the first match of  status\" ?: ?(?:\")?([1-5][0-9][0-9])\b
 *   message  the first match of  (?:msg|message)\" ?: ?\"((?:[^\\]|\\\\\\")*)
 *   method   the first match of  method\" ?: ?\"([A-Z]+)
 *   uri      the first match of  (?:uri|path)\" ?: ?\"((?:[^\\]|\\\\\\")*)
 *
 * A line's message is its message field, else "METHOD uri" (either may be missing), else the
 * line itself without a trailing \n; a line not starting with "{" is its own message, without a
 * trailing \n and then without a trailing \r.
 *
 * These are exactly the regexes of opslib.logparse._field_patterns(escaped=True) (leftmost
 * match, as the regex engine finds it); the fields are only looked for in lines starting with
 * "{". tests/unit/test_logs.py checks that both give the same analysis.
 *
 * Plain C99, no Python API: loaded with ctypes, which releases the GIL during the call.
 */
#include <stdint.h>
#include <string.h>

/* An arrow string view (16 bytes) of buf[s:s+len]: the length, then the string itself when it
 * has at most 12 bytes (zero-padded), else its first 4 bytes, buffer index 0 and its offset. */
static void put_view(uint8_t *v, const uint8_t *buf, int64_t s, int64_t len) {
    uint32_t l = (uint32_t)len, zero = 0, off = (uint32_t)s;
    memcpy(v, &l, 4);
    if (len <= 12) {
        memset(v + 4, 0, 12);
        memcpy(v + 4, buf + s, (size_t)len);
    } else {
        memcpy(v + 4, buf + s, 4);
        memcpy(v + 8, &zero, 4);
        memcpy(v + 12, &off, 4);
    }
}

enum { LV, ST, MSG, METHOD, URI, NFIELDS };

static int is_word(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int ends_with(const uint8_t *buf, int64_t lo, int64_t end, const char *key, int64_t n) {
    return end - n >= lo && memcmp(buf + end - n, key, (size_t)n) == 0;
}

/* After a key and its closing \" at q-1..q: " ?: ?" then, if want_quote, \" ; returns the value
 * start or -1. */
static int64_t after_colon(const uint8_t *buf, int64_t p, int64_t end, int want_quote) {
    if (p < end && buf[p] == ' ') p++;
    if (p >= end || buf[p] != ':') return -1;
    p++;
    if (p < end && buf[p] == ' ') p++;
    if (want_quote) {
        if (p + 2 > end || buf[p] != '\\' || buf[p + 1] != '"') return -1;
        p += 2;
    }
    return p;
}

/* End of an inner string value: any byte but a backslash, or the escaped quote \\\" . */
static int64_t string_end(const uint8_t *buf, int64_t p, int64_t end) {
    for (;;) {
        const uint8_t *bs = memchr(buf + p, '\\', (size_t)(end - p));
        if (bs == NULL) return end;
        p = bs - buf;
        if (p + 4 <= end && buf[p + 1] == '\\' && buf[p + 2] == '\\' && buf[p + 3] == '"') {
            p += 4;
        } else {
            return p;
        }
    }
}

static int64_t letters_end(const uint8_t *buf, int64_t p, int64_t end, int upper_only) {
    while (p < end) {
        uint8_t c = buf[p];
        if (upper_only ? (c >= 'A' && c <= 'Z') : ((uint8_t)(c | 32) >= 'a' && (uint8_t)(c | 32) <= 'z'))
            p++;
        else
            break;
    }
    return p;
}

/* Try every field whose key ends just before the \" at q (q-1 is the backslash). */
static void at_quote(const uint8_t *buf, int64_t s, int64_t e, int64_t q, int64_t *o) {
    int64_t k = q - 1; /* the key ends before the backslash */
    int64_t v, w;
    if (o[2 * LV + 1] < 0 && (ends_with(buf, s, k, "level", 5) || ends_with(buf, s, k, "severity", 8))) {
        v = after_colon(buf, q + 1, e, 1);
        if (v >= 0 && (w = letters_end(buf, v, e, 0)) > v) {
            o[2 * LV] = v;
            o[2 * LV + 1] = w - v;
        }
    }
    if (o[2 * ST + 1] < 0 && ends_with(buf, s, k, "status", 6)) {
        v = after_colon(buf, q + 1, e, 0);
        if (v >= 0) {
            if (v + 5 <= e && buf[v] == '\\' && buf[v + 1] == '"') v += 2;
            if (v + 3 <= e && buf[v] >= '1' && buf[v] <= '5' && buf[v + 1] >= '0' && buf[v + 1] <= '9' &&
                buf[v + 2] >= '0' && buf[v + 2] <= '9' && (v + 3 == e || !is_word(buf[v + 3]))) {
                o[2 * ST] = v;
                o[2 * ST + 1] = 3;
            }
        }
    }
    if (o[2 * MSG + 1] < 0 && (ends_with(buf, s, k, "msg", 3) || ends_with(buf, s, k, "message", 7))) {
        v = after_colon(buf, q + 1, e, 1);
        if (v >= 0) {
            o[2 * MSG] = v;
            o[2 * MSG + 1] = string_end(buf, v, e) - v;
        }
    }
    if (o[2 * METHOD + 1] < 0 && ends_with(buf, s, k, "method", 6)) {
        v = after_colon(buf, q + 1, e, 1);
        if (v >= 0 && (w = letters_end(buf, v, e, 1)) > v) {
            o[2 * METHOD] = v;
            o[2 * METHOD + 1] = w - v;
        }
    }
    if (o[2 * URI + 1] < 0 && (ends_with(buf, s, k, "uri", 3) || ends_with(buf, s, k, "path", 4))) {
        v = after_colon(buf, q + 1, e, 1);
        if (v >= 0) {
            o[2 * URI] = v;
            o[2 * URI + 1] = string_end(buf, v, e) - v;
        }
    }
}

static int64_t strip(const uint8_t *buf, int64_t s, int64_t e, char c) {
    return (e - s >= 2 && buf[e - 2] == '\\' && buf[e - 1] == (uint8_t)c) ? e - 2 : e;
}

/* Append at most *left more characters (UTF-8 code points) of buf[p:e) to msg and, with its
 * ASCII digits made 0, to key. */
static int64_t put(const uint8_t *buf, int64_t p, int64_t e, uint8_t *msg, uint8_t *key, int64_t at,
                   int64_t *left) {
    for (; p < e; p++) {
        uint8_t c = buf[p];
        if ((c & 0xC0) != 0x80) { /* a character starts here */
            if (*left == 0) break;
            (*left)--;
        }
        msg[at] = c;
        key[at++] = (c >= '0' && c <= '9') ? '0' : c;
    }
    return at;
}

/* Scan n lines.
 *   views (2 x n x 16), valid (2 x n): the level and status fields as arrow string views into
 *       buf, and whether each was found
 *   offsets (n + 1), msg, key: each line's message cut to max_chars characters, and the same
 *       with its digits made 0, as arrow string arrays; msg and key must hold
 *       sum(ends - starts) + n bytes
 *   kw (n): 1 where the level must come from keywords of the whole line (a JSON line without
 *       level or status, or a plain-text line longer than max_chars bytes)
 * Returns the bytes written to msg. */
int64_t opslib_scan_fields(const uint8_t *buf, const int64_t *starts, const int64_t *ends, int64_t n,
                           int64_t max_chars, uint8_t *views, uint8_t *valid, int64_t *offsets, uint8_t *msg,
                           uint8_t *key, uint8_t *kw) {
    int64_t at = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = starts[i], e = ends[i], left = max_chars;
        int64_t o[2 * NFIELDS];
        for (int f = 0; f < NFIELDS; f++) {
            o[2 * f] = 0;
            o[2 * f + 1] = -1;
        }
        if (e <= s || buf[s] != '{') {
            at = put(buf, s, strip(buf, s, strip(buf, s, e, 'n'), 'r'), msg, key, at, &left);
            kw[i] = e - s > max_chars;
        } else {
            int64_t p = s;
            for (;;) {
                const uint8_t *qp = memchr(buf + p, '"', (size_t)(e - p));
                if (qp == NULL) break;
                int64_t q = qp - buf;
                if (q > s && buf[q - 1] == '\\') at_quote(buf, s, e, q, o);
                p = q + 1;
                if (o[2 * LV + 1] >= 0 && o[2 * ST + 1] >= 0 && o[2 * MSG + 1] >= 0) break;
            }
            if (o[2 * MSG + 1] >= 0) {
                at = put(buf, o[2 * MSG], o[2 * MSG] + o[2 * MSG + 1], msg, key, at, &left);
            } else if (o[2 * METHOD + 1] > 0 || o[2 * URI + 1] > 0) { /* "METHOD uri" */
                if (o[2 * METHOD + 1] > 0)
                    at = put(buf, o[2 * METHOD], o[2 * METHOD] + o[2 * METHOD + 1], msg, key, at, &left);
                if (o[2 * METHOD + 1] > 0 && o[2 * URI + 1] >= 0 && left > 0) {
                    left--;
                    msg[at] = key[at] = ' ';
                    at++;
                }
                if (o[2 * URI + 1] >= 0)
                    at = put(buf, o[2 * URI], o[2 * URI] + o[2 * URI + 1], msg, key, at, &left);
            } else {
                at = put(buf, s, strip(buf, s, e, 'n'), msg, key, at, &left);
            }
            kw[i] = o[2 * LV + 1] < 0 && o[2 * ST + 1] < 0;
        }
        for (int f = 0; f < 2; f++) {
            valid[f * n + i] = o[2 * f + 1] >= 0;
            put_view(views + 16 * (f * n + i), buf, o[2 * f], o[2 * f + 1] >= 0 ? o[2 * f + 1] : 0);
        }
        offsets[i + 1] = at;
    }
    return at;
}

/* ---- the json-file envelope ------------------------------------------------------------------ */

/* Lines in buf[0:size): newlines, plus one for a last line without a newline. */
int64_t opslib_count_lines(const uint8_t *buf, int64_t size) {
    int64_t n = 0, p = 0;
    for (;;) {
        const uint8_t *nl = memchr(buf + p, '\n', (size_t)(size - p));
        if (nl == NULL) break;
        n++;
        p = nl - buf + 1;
    }
    return n + (p < size);
}

static const char TAIL_OUT[] = "\",\"stream\":\"stdout\",\"time\":\"";
static const char TAIL_ERR[] = "\",\"stream\":\"stderr\",\"time\":\"";
#define TAIL_LEN 28
#define PREFIX_LEN 8
/* Lengths of the times Docker writes (RFC3339Nano, trailing zeros of the fraction trimmed),
 * most common first: the order of opslib.logparse._TIME_LENGTHS. */
static const int TIME_LENGTHS[] = {30, 29, 28, 27, 26, 25, 24, 23, 22, 20, 21, 31,
                                   32, 33, 34, 35, 36, 37, 38, 39, 40};

/* Cut the usual entry shape {"log":"...","stream":"std...","time":"..."} of each of the n lines
 * of buf[0:size) (n from opslib_count_lines), as opslib.logparse._cut_envelopes does:
 *   starts (n): where each line starts
 *   log_s, log_e, time_s (n): the log value's span and the time's start (-1 when the line does
 *       not have the usual shape)
 *   views (3 x n x 16): time, stream and log as arrow string views into buf (usual lines only)
 *   stream (n): 1 for stderr, else 0
 *   complete (n): whether the log value ends with an escaped newline (not a partial entry)
 * Returns how many lines do not have the usual shape. */
int64_t opslib_cut_envelopes(const uint8_t *buf, int64_t size, int64_t n, int64_t *starts,
                             int64_t *log_s, int64_t *log_e, int64_t *time_s, uint8_t *views,
                             uint8_t *stream, uint8_t *complete) {
    int64_t rest = 0, p = 0;
    const int64_t minimum = PREFIX_LEN + TAIL_LEN + 2 + 20;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *nl = memchr(buf + p, '\n', (size_t)(size - p));
        int64_t s = p, e = nl ? nl - buf : size;
        starts[i] = s;
        p = e + 1;
        log_s[i] = log_e[i] = time_s[i] = -1;
        stream[i] = 0;
        complete[i] = 0;
        if (e - s >= minimum && memcmp(buf + s, "{\"log\":\"", PREFIX_LEN) == 0 && buf[e - 2] == '"' &&
            buf[e - 1] == '}') {
            for (size_t k = 0; k < sizeof TIME_LENGTHS / sizeof TIME_LENGTHS[0]; k++) {
                int64_t q = e - 3 - TIME_LENGTHS[k]; /* the quote before the time */
                int64_t tail = q - (TAIL_LEN - 1);
                if (buf[q] != '"' || tail < s + PREFIX_LEN) continue;
                int err = memcmp(buf + tail, TAIL_ERR, TAIL_LEN) == 0;
                if (!err && memcmp(buf + tail, TAIL_OUT, TAIL_LEN) != 0) continue;
                log_s[i] = s + PREFIX_LEN;
                log_e[i] = tail;
                time_s[i] = q + 1;
                stream[i] = (uint8_t)err;
                break;
            }
        }
        if (log_s[i] < 0) {
            rest++;
            continue;
        }
        int64_t ls = log_s[i], le = log_e[i];
        /* ends with \n, and that backslash is not itself escaped (\\n is a backslash and "n") */
        complete[i] = le - ls >= 2 && buf[le - 2] == '\\' && buf[le - 1] == 'n' &&
                      (le - ls < 3 || buf[le - 3] != '\\' || (le - ls >= 4 && buf[le - 4] == '\\'));
        put_view(views + 16 * i, buf, time_s[i], e - 2 - time_s[i]);
        put_view(views + 16 * (n + i), buf, le + 12, 6);
        put_view(views + 16 * (2 * n + i), buf, ls, le - ls);
    }
    return rest;
}
