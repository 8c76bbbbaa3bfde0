/*
 * opslib native field scanner: the per-line work of opslib.logparse, in one pass over each line.
 *
 * Input: a batch of Docker json-file lines and, per line, the span [start, end) of its "log"
 * value, still JSON-escaped (an inner JSON quote reads \" there, a quote inside an inner string
 * \\\"; dockerd also writes <, > and & as \u003c, \u003e, \u0026). In lines starting with
 * "{", it finds:
 *
 *   level    the first match of  (?:level|severity)\" ?: ?\"([A-Za-z]+)
 *   status   the first match of  status\" ?: ?(?:\")?([1-5][0-9][0-9])\b
 *   message  the first match of  (?:msg|message)\" ?: ?\"(VALUE)
 *   method   the first match of  method\" ?: ?\"([A-Z]+)
 *   uri      the first match of  (?:uri|path)\" ?: ?\"(VALUE)
 *
 * where VALUE, (?:[^\\]|\\[^"\\]|\\\\(?:[^\\]|\\.))*, is an inner JSON string up to its
 * closing quote, read token by token: a character, an escape of the envelope other than \" and
 * \\ (\n, \u003c, ...), or an escaped backslash with the (escaped) character after it.
 *
 * A line's message is its message field, else "METHOD uri" (either may be missing), else the
 * line itself without a trailing newline; a line not starting with "{" is its own message,
 * without a trailing newline and then without a trailing carriage return. Messages are decoded
 * as a JSON decoder does (see unescape(): the envelope's escapes, and for the message and uri
 * fields those of the inner JSON string too) before they are cut to max_chars characters and
 * their digits are zeroed, so the grouping key never touches the inside of an escape.
 *
 * These are exactly the regexes of opslib.logparse._field_patterns(escaped=True) (leftmost
 * match, as the regex engine finds it) and the decoding of opslib.logparse._json_unescape; the
 * fields are only looked for in lines starting with "{". tests/unit/test_logs.py checks that
 * both give the same analysis.
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

/* End of an inner string value (VALUE above): characters, envelope escapes other than \" and
 * \\, and escaped backslashes with the escaped character after them; it ends at the closing \"
 * (or where the tokens stop matching). */
static int64_t string_end(const uint8_t *buf, int64_t p, int64_t end) {
    for (;;) {
        const uint8_t *bs = memchr(buf + p, '\\', (size_t)(end - p));
        if (bs == NULL) return end;
        p = bs - buf;
        if (p + 1 >= end || buf[p + 1] == '"') return p;
        if (buf[p + 1] != '\\') {
            p += 2; /* \n, \u..., \/: one character of the value */
        } else if (p + 2 >= end) {
            return p;
        } else if (buf[p + 2] != '\\') {
            p += 3; /* an escaped backslash, then a plain character */
        } else if (p + 3 >= end) {
            return p;
        } else {
            p += 4; /* an escaped backslash, then an escape of the envelope */
        }
    }
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 32;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The code unit of \uXXXX at in[p] (p at the backslash), or -1. */
static int32_t hex4(const uint8_t *in, int64_t p, int64_t e) {
    if (p + 6 > e || in[p] != '\\' || in[p + 1] != 'u') return -1;
    int32_t v = 0;
    for (int k = 2; k < 6; k++) {
        int d = hex_digit(in[p + k]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int64_t put_utf8(uint8_t *out, int64_t at, uint32_t cp) {
    if (cp < 0x80) {
        out[at++] = (uint8_t)cp;
    } else if (cp < 0x800) {
        out[at++] = (uint8_t)(0xC0 | (cp >> 6));
        out[at++] = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[at++] = (uint8_t)(0xE0 | (cp >> 12));
        out[at++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[at++] = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        out[at++] = (uint8_t)(0xF0 | (cp >> 18));
        out[at++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        out[at++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[at++] = (uint8_t)(0x80 | (cp & 0x3F));
    }
    return at;
}

/* Decode the JSON string escapes of in[p:e) into out[at:], as a JSON decoder does: \" \\ \/ \b
 * \f \n \r \t, \uXXXX (a surrogate pair as one character, a lone surrogate as U+FFFD); a
 * backslash starting no valid escape is kept as it is. The output is never longer than the
 * input, so out may be in itself at or before p. Returns the end of the output. */
static int64_t unescape(const uint8_t *in, int64_t p, int64_t e, uint8_t *out, int64_t at) {
    while (p < e) {
        const uint8_t *bs = memchr(in + p, '\\', (size_t)(e - p));
        int64_t q = bs ? bs - in : e;
        if (q > p) {
            if (out + at != in + p) memmove(out + at, in + p, (size_t)(q - p));
            at += q - p;
            p = q;
        }
        if (p >= e) break;
        uint8_t c = p + 1 < e ? in[p + 1] : 0;
        int32_t u;
        switch (c) {
        case '"': case '\\': case '/': out[at++] = c; p += 2; continue;
        case 'b': out[at++] = 8; p += 2; continue;
        case 'f': out[at++] = 12; p += 2; continue;
        case 'n': out[at++] = 10; p += 2; continue;
        case 'r': out[at++] = 13; p += 2; continue;
        case 't': out[at++] = 9; p += 2; continue;
        case 'u':
            u = hex4(in, p, e);
            if (u >= 0) {
                int32_t lo;
                if (u >= 0xD800 && u <= 0xDBFF && (lo = hex4(in, p + 6, e)) >= 0xDC00 && lo <= 0xDFFF) {
                    at = put_utf8(out, at, 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00));
                    p += 12;
                } else {
                    at = put_utf8(out, at, (u >= 0xD800 && u <= 0xDFFF) ? 0xFFFD : (uint32_t)u);
                    p += 6;
                }
                continue;
            }
            break;
        default:
            break;
        }
        out[at++] = '\\'; /* not an escape: kept */
        p += 1;
    }
    return at;
}

/* Decode a value into msg[at:]: the envelope's escapes, then (twice) those of the inner JSON
 * string. Returns the end of the output. */
static int64_t put_value(const uint8_t *buf, int64_t p, int64_t e, uint8_t *msg, int64_t at, int twice) {
    int64_t end = unescape(buf, p, e, msg, at);
    return twice ? unescape(msg, at, end, msg, at) : end;
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

/* msg[from:at) without a trailing newline, then (text) without a trailing carriage return. */
static int64_t strip(const uint8_t *msg, int64_t from, int64_t at, int text) {
    if (at > from && msg[at - 1] == '\n') at--;
    if (text && at > from && msg[at - 1] == '\r') at--;
    return at;
}

/* Cut msg[from:at) to max_chars characters (UTF-8 code points) and write it to key with its
 * ASCII digits made 0. Returns the new end. */
static int64_t finish(const uint8_t *msg, uint8_t *key, int64_t from, int64_t at, int64_t max_chars) {
    if (at - from > max_chars) {
        int64_t chars = 0, p = from;
        for (; p < at; p++) {
            if ((msg[p] & 0xC0) != 0x80 && chars++ == max_chars) break;
        }
        at = p;
    }
    for (int64_t p = from; p < at; p++) {
        uint8_t c = msg[p];
        key[p] = (c >= '0' && c <= '9') ? '0' : c;
    }
    return at;
}

/* Scan n lines.
 *   views (2 x n x 16), valid (2 x n): the level and status fields as arrow string views into
 *       buf, and whether each was found
 *   offsets (n + 1), msg, key: each line's message, decoded and cut to max_chars characters,
 *       and the same with its digits made 0, as arrow string arrays; msg and key must hold
 *       sum(ends - starts) + n bytes (a decoded message is never longer than its escaped text,
 *       "METHOD uri" one byte longer)
 *   kw (n): 1 where the level must come from keywords of the whole line (a JSON line without
 *       level or status, or a plain-text line longer than max_chars bytes)
 * Returns the bytes written to msg. */
int64_t opslib_scan_fields(const uint8_t *buf, const int64_t *starts, const int64_t *ends, int64_t n,
                           int64_t max_chars, uint8_t *views, uint8_t *valid, int64_t *offsets, uint8_t *msg,
                           uint8_t *key, uint8_t *kw) {
    int64_t at = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = starts[i], e = ends[i], from = at;
        int64_t o[2 * NFIELDS];
        for (int f = 0; f < NFIELDS; f++) {
            o[2 * f] = 0;
            o[2 * f + 1] = -1;
        }
        if (e <= s || buf[s] != '{') {
            at = strip(msg, from, put_value(buf, s, e, msg, at, 0), 1);
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
                at = put_value(buf, o[2 * MSG], o[2 * MSG] + o[2 * MSG + 1], msg, at, 1);
            } else if (o[2 * METHOD + 1] > 0 || o[2 * URI + 1] > 0) { /* "METHOD uri" */
                if (o[2 * METHOD + 1] > 0) {
                    memcpy(msg + at, buf + o[2 * METHOD], (size_t)o[2 * METHOD + 1]);
                    at += o[2 * METHOD + 1];
                }
                if (o[2 * METHOD + 1] > 0 && o[2 * URI + 1] >= 0) msg[at++] = ' ';
                if (o[2 * URI + 1] >= 0)
                    at = put_value(buf, o[2 * URI], o[2 * URI] + o[2 * URI + 1], msg, at, 1);
            } else {
                at = strip(msg, from, put_value(buf, s, e, msg, at, 0), 0);
            }
            kw[i] = o[2 * LV + 1] < 0 && o[2 * ST + 1] < 0;
        }
        at = finish(msg, key, from, at, max_chars);
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
