/* The compiled instance builder of `keras-albert create-pretraining-data`.
 *
 * One call builds one task (a dupe copy of a chunk of documents): segment pairs, truncation, masking, serialization
 * as tf.train.Example and TFRecord framing, in one pass with no Python objects per instance. It is the exact
 * counterpart of the NumPy builder in create_pretraining_data.py (`_PairMaker`, `_Batch`, `_shuffled_order`), which
 * stays as the fallback when this module was not compiled: both draw the same numbers from the same counter-based
 * streams (splitmix64 of key + counter), so the records are byte-identical whichever one runs (tested).
 *
 * Streams: pairing draws sequentially from `pair_key`; row r (in pair order) masks with the stream
 * key(mask_key, r): step s of its visit draws counters 2s (the unit visited, an incremental Fisher-Yates shuffle)
 * and 2s+1 (the n-gram length), masked token k draws REPLACE + 2k (80/10/10) and REPLACE + 2k + 1 (the random
 * token); the output order is a Fisher-Yates shuffle drawing counter i from `shuffle_key`, then regrouped by shard
 * (position p of the shuffled records goes to shard (task position + p) mod num_shards; `_shard_major`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define REPLACE_COUNTER (1ULL << 40)

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t derive_key(uint64_t parent, uint64_t child) { return mix64(parent + mix64(child + GOLDEN)); }

static uint64_t draw(uint64_t key, uint64_t counter) { return mix64(key + (counter + 1) * GOLDEN); }

static double uniform(uint64_t x) { return (double)(x >> 11) * 0x1.0p-53; }

/* Uniform in [0, span), span < 2^32: the high 32 bits scaled (bias below span / 2^32). */
static int64_t below(uint64_t x, int64_t span) { return (int64_t)(((x >> 32) * (uint64_t)span) >> 32); }

typedef struct {
    uint64_t key, counter;
} Stream;

static uint64_t next(Stream *s) { return draw(s->key, s->counter++); }
static double stream_random(Stream *s) { return uniform(next(s)); }
static int64_t stream_randint(Stream *s, int64_t low, int64_t high) { return low + below(next(s), high - low + 1); }

/* The number of set bits among `count` random bits (Binomial(count, 0.5)). */
static int64_t stream_bits(Stream *s, int64_t count) {
    int64_t total = 0;
    while (count > 0) {
        uint64_t x = next(s);
        if (count < 64) x &= (1ULL << count) - 1;
        total += __builtin_popcountll(x);
        count -= 64;
    }
    return total;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Growing byte buffers and arrays */

typedef struct {
    unsigned char *data;
    size_t len, cap;
} Buf;

static int reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Callers reserve room first (10 bytes per varint at most). */
static void put_varint(Buf *b, uint64_t v) {
    while (v >= 0x80) {
        b->data[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (unsigned char)v;
}

static void put_bytes(Buf *b, const void *data, size_t n) {
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

typedef struct {
    int64_t *a0, *a1, *b0, *b1, *label;
    size_t len, cap;
} Pairs;

static int pairs_add(Pairs *p, int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t label) {
    if (p->len == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        int64_t **arrays[5] = {&p->a0, &p->a1, &p->b0, &p->b1, &p->label};
        for (int i = 0; i < 5; i++) {
            int64_t *grown = realloc(*arrays[i], cap * sizeof(int64_t));
            if (!grown) return -1;
            *arrays[i] = grown;
        }
        p->cap = cap;
    }
    p->a0[p->len] = a0;
    p->a1[p->len] = a1;
    p->b0[p->len] = b0;
    p->b1[p->len] = b1;
    p->label[p->len] = label;
    p->len++;
    return 0;
}

static void pairs_free(Pairs *p) {
    free(p->a0);
    free(p->a1);
    free(p->b0);
    free(p->b1);
    free(p->label);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* CRC-32C (Castagnoli), slicing by 8, and TFRecord's masked form */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) {
            uint32_t previous = crc_table[t - 1][i];
            crc_table[t][i] = (previous >> 8) ^ crc_table[0][previous & 0xFF];
        }
}

static uint32_t crc32c_table(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* SSE4.2's crc32 instruction computes CRC-32C: 8 bytes per instruction, several times the table's speed. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(const unsigned char *p, size_t n) {
    uint64_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; p++, n--) c32 = __builtin_ia32_crc32qi(c32, *p);
    return c32 ^ 0xFFFFFFFFu;
}
#define HAVE_CRC32C_INSTRUCTION 1
#endif

static uint32_t (*crc32c)(const unsigned char *, size_t) = crc32c_table;

static void put_masked_crc(Buf *b, const unsigned char *data, size_t n) {
    uint32_t v = crc32c(data, n);
    uint32_t masked = ((v >> 15) | (v << 17)) + 0xA282EAD8u;
    for (int i = 0; i < 4; i++) b->data[b->len++] = (unsigned char)(masked >> (8 * i));
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* tf.train.Example: Example{features=1: Features{feature=1: map<string, Feature>}}, map entry {key=1, value=2},
 * Feature{float_list=2 | int64_list=3: {value=1 packed}} */

#define INT64_LIST 0x1a
#define FLOAT_LIST 0x12

/* One map entry whose packed payload is `payload` (n bytes). */
static void put_entry(Buf *b, const char *name, unsigned char kind, const unsigned char *payload, size_t n) {
    size_t key = strlen(name);
    size_t value_list = 1 + varint_size(n);
    size_t feature = 1 + varint_size(value_list + n) + value_list;
    size_t entry = 1 + varint_size(key) + key + 1 + varint_size(feature + n) + feature + n;
    b->data[b->len++] = 0x0a;
    put_varint(b, entry);
    b->data[b->len++] = 0x0a;
    put_varint(b, key);
    put_bytes(b, name, key);
    b->data[b->len++] = 0x12;
    put_varint(b, feature + n);
    b->data[b->len++] = kind;
    put_varint(b, value_list + n);
    b->data[b->len++] = 0x0a;
    put_varint(b, n);
    put_bytes(b, payload, n);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* The task */

typedef struct {
    const int32_t *tokens;
    const int64_t *sentence_starts, *document_starts;
    const unsigned char *word_start;
    const int64_t *replacement_ids;
    const double *thresholds;
    Py_ssize_t num_tokens, num_sentences, num_documents, vocab_size, num_replacements, num_thresholds;
    uint64_t pair_key, mask_key, shuffle_key;
    int sop, token_boundary, whole_words, no_masking, frame;
    int64_t max_seq_length, max_predictions, max_ngram, cls_id, sep_id, mask_id, num_shards, position;
    double masked_lm_prob, short_seq_prob;
} Settings;

typedef struct {
    int64_t instances, tokens, padding, masked, replaced_mask, replaced_random, kept, label_1;
    int64_t ngrams[64], ngram_draws[64];
} Stats;

/* Google's `truncate_seq_pair` in closed form (see `_PairMaker._add`), then the pair is kept. */
static int add_pair(Pairs *pairs, Stream *rng, int64_t max_tokens, int64_t a0, int64_t a1, int64_t b0, int64_t b1,
                    int64_t label) {
    int64_t length_a = a1 - a0, length_b = b1 - b0, excess = length_a + length_b - max_tokens;
    if (excess > 0) {
        int64_t from_a, from_b, rest;
        if (length_a > length_b) {
            from_a = excess < length_a - length_b ? excess : length_a - length_b;
            rest = excess - from_a;
            from_b = (rest + 1) / 2;
            from_a += rest / 2;
        } else {
            from_b = excess < length_b - length_a + 1 ? excess : length_b - length_a + 1;
            rest = excess - from_b;
            from_a = (rest + 1) / 2;
            from_b += rest / 2;
        }
        int64_t front_a = from_a ? stream_bits(rng, from_a) : 0;
        int64_t front_b = from_b ? stream_bits(rng, from_b) : 0;
        a0 += front_a;
        a1 -= from_a - front_a;
        b0 += front_b;
        b1 -= from_b - front_b;
    }
    return pairs_add(pairs, a0, a1, b0, b1, label);
}

/* Google's `create_instances_from_document` (see `_PairMaker.document`). Returns -1 when out of memory. */
static int document_pairs(const Settings *s, Pairs *pairs, Stream *rng, int64_t document) {
    const int64_t *starts = s->sentence_starts;
    int64_t max_tokens = s->max_seq_length - 3;
    int64_t first = s->document_starts[document], last = s->document_starts[document + 1];
    int64_t target = max_tokens;
    if (stream_random(rng) < s->short_seq_prob) target = stream_randint(rng, 2, max_tokens);
    int64_t chunk_first = first, chunk_length = 0;
    for (int64_t i = first; i < last; i++) {
        chunk_length += starts[i + 1] - starts[i];
        if (!(i == last - 1 || chunk_length >= target)) continue;
        int64_t segments = i + 1 - chunk_first;
        int64_t a_end = chunk_first + (segments >= 2 ? stream_randint(rng, 1, segments - 1) : 1);
        int64_t a0 = starts[chunk_first], a1 = starts[a_end], b0 = 0, b1 = 0, label = 0;
        int valid = 1;
        if (s->sop) {
            if (segments >= 2) {
                b0 = starts[a_end];
                b1 = starts[i + 1];
            } else if (a1 - a0 < 2) {
                valid = 0;
            } else { /* a lone sentence, cut at a random word start (rejection sampling, 64 tries) */
                int64_t cut = stream_randint(rng, a0 + 1, a1 - 1);
                for (int attempt = 0; attempt < 64; attempt++) {
                    int32_t token = s->tokens[cut];
                    if (token >= 0 && token < s->vocab_size && s->word_start[token]) break;
                    cut = stream_randint(rng, a0 + 1, a1 - 1);
                }
                b0 = cut;
                b1 = a1;
                a1 = cut;
            }
            if (stream_random(rng) < 0.5) {
                int64_t t0 = a0, t1 = a1;
                a0 = b0;
                a1 = b1;
                b0 = t0;
                b1 = t1;
                label = 1;
            }
        } else if (segments == 1 || stream_random(rng) < 0.5) {
            label = 1;
            int64_t other = document;
            for (int attempt = 0; attempt < 10; attempt++) {
                other = stream_randint(rng, 0, s->num_documents - 1);
                if (other != document) break;
            }
            int64_t other_first = s->document_starts[other], other_last = s->document_starts[other + 1];
            int64_t start = stream_randint(rng, other_first, other_last - 1), end = start;
            int64_t wanted = target - (a1 - a0);
            while (end < other_last) {
                end++;
                if (starts[end] - starts[start] >= wanted) break;
            }
            b0 = starts[start];
            b1 = starts[end];
            i = a_end - 1; /* the unused sentences start the next chunk */
        } else {
            b0 = starts[a_end];
            b1 = starts[i + 1];
        }
        if (valid && a1 > a0 && b1 > b0 && add_pair(pairs, rng, max_tokens, a0, a1, b0, b1, label) < 0) return -1;
        chunk_first = i + 1;
        chunk_length = 0;
    }
    return 0;
}

/* Per-row scratch, sized for max_seq_length. */
typedef struct {
    int64_t *ids, *candidates, *unit_first, *perm, *positions, *masked_ids;
    unsigned char *segment, *boundary, *covered, *fixed;
    float *weights;
    Buf payload, body;
} Row;

static int row_alloc(Row *r, int64_t seq, int64_t predictions, int64_t max_ngram) {
    memset(r, 0, sizeof(*r));
    r->ids = malloc(seq * sizeof(int64_t));
    r->candidates = malloc(seq * sizeof(int64_t));
    r->unit_first = malloc((seq + 1) * sizeof(int64_t));
    r->perm = malloc(seq * sizeof(int64_t));
    r->positions = malloc(predictions * sizeof(int64_t));
    r->masked_ids = malloc(predictions * sizeof(int64_t));
    r->segment = malloc(seq);
    r->boundary = malloc(seq);
    r->covered = malloc(seq + max_ngram);
    r->fixed = malloc(seq);
    r->weights = malloc(predictions * sizeof(float));
    if (!r->ids || !r->candidates || !r->unit_first || !r->perm || !r->positions || !r->masked_ids || !r->segment ||
        !r->boundary || !r->covered || !r->fixed || !r->weights)
        return -1;
    return 0;
}

static void row_free(Row *r) {
    free(r->ids);
    free(r->candidates);
    free(r->unit_first);
    free(r->perm);
    free(r->positions);
    free(r->masked_ids);
    free(r->segment);
    free(r->boundary);
    free(r->covered);
    free(r->fixed);
    free(r->weights);
    free(r->payload.data);
    free(r->body.data);
}

static int64_t masking_budget(const Settings *s, int64_t length) {
    int64_t wanted = (int64_t)nearbyint((double)length * s->masked_lm_prob); /* half to even, as NumPy's round */
    if (wanted < 1) wanted = 1;
    return wanted < s->max_predictions ? wanted : s->max_predictions;
}

/* ALBERT's `create_masked_lm_predictions` for one row `[CLS] A [SEP] B [SEP]` of `length` tokens with |A| = la (see
 * `_Batch.mask`): fills positions, masked_ids and weights, and replaces the chosen tokens in r->ids. Returns the
 * number of masked tokens. */
static int64_t mask_row(const Settings *s, Row *r, int64_t length, int64_t la, uint64_t key, Stats *stats) {
    int64_t *first = r->unit_first, *perm = r->perm, *candidates = r->candidates;
    int64_t num_candidates = 0, units = 0;
    for (int64_t c = 1; c < length - 1; c++) {
        if (c == la + 1) continue; /* the middle [SEP] */
        /* A unit: a token, or a whole word (a word start, or the first token after [CLS] or [SEP]). */
        if (!s->whole_words || r->boundary[c] || c == 1 || c == la + 2) first[units++] = num_candidates;
        candidates[num_candidates++] = c;
    }
    first[units] = num_candidates;
    int64_t budget = masking_budget(s, length), count = 0;
    for (int64_t u = 0; u < units; u++) perm[u] = u;
    memset(r->covered, 0, units + s->max_ngram);
    for (int64_t step = 0; step < units && count < budget; step++) {
        int64_t j = step + below(draw(key, 2 * (uint64_t)step), units - step), u = perm[j];
        perm[j] = perm[step];
        perm[step] = u;
        double x = uniform(draw(key, 2 * (uint64_t)step + 1));
        int64_t drawn = 1;
        for (Py_ssize_t t = 0; t < s->num_thresholds; t++) drawn += x > s->thresholds[t];
        int64_t n = drawn < units - u ? drawn : units - u, room = budget - count, fits = 0;
        for (int64_t k = 1; k <= n && first[u + k] - first[u] <= room; k++) fits = k;
        int overlap = 0;
        for (int64_t k = 0; k < fits; k++) overlap |= r->covered[u + k];
        if (fits >= 1 && !overlap) {
            memset(r->covered + u, 1, fits);
            count += first[u + fits] - first[u];
            stats->ngrams[fits - 1]++;
        }
        stats->ngram_draws[drawn - 1]++;
    }
    int64_t k = 0;
    for (int64_t u = 0; u < units; u++) {
        if (!r->covered[u]) continue;
        for (int64_t i = first[u]; i < first[u + 1]; i++, k++) {
            int64_t c = candidates[i];
            r->positions[k] = c;
            r->masked_ids[k] = r->ids[c];
            r->weights[k] = 1.0f;
            double x = uniform(draw(key, REPLACE_COUNTER + 2 * (uint64_t)k));
            if (x < 0.8) {
                r->ids[c] = s->mask_id;
                stats->replaced_mask++;
            } else if (x < 0.9) {
                uint64_t x_token = draw(key, REPLACE_COUNTER + 2 * (uint64_t)k + 1);
                r->ids[c] = s->replacement_ids[below(x_token, s->num_replacements)];
                stats->replaced_random++;
            } else {
                stats->kept++;
            }
        }
    }
    stats->masked += k;
    return k;
}

static void put_varints_entry(Buf *body, Buf *payload, const char *name, const int64_t *values, int64_t count,
                              int64_t zeros) {
    payload->len = 0;
    for (int64_t i = 0; i < count; i++) put_varint(payload, (uint64_t)values[i]);
    memset(payload->data + payload->len, 0, zeros);
    payload->len += zeros;
    put_entry(body, name, INT64_LIST, payload->data, payload->len);
}

static void put_flags_entry(Buf *body, unsigned char *fixed, const char *name, const unsigned char *flags,
                            int64_t count, int64_t zeros) {
    memcpy(fixed, flags, count);
    memset(fixed + count, 0, zeros);
    put_entry(body, name, INT64_LIST, fixed, count + zeros);
}

/* One pair as a serialized tf.train.Example, framed as a TFRecord when asked, appended to `out`. */
static int write_record(const Settings *s, Row *r, const Pairs *pairs, size_t index, Buf *out, Stats *stats) {
    int64_t seq = s->max_seq_length, predictions = s->max_predictions;
    int64_t a0 = pairs->a0[index], la = pairs->a1[index] - a0, b0 = pairs->b0[index], lb = pairs->b1[index] - b0;
    int64_t length = la + lb + 3, label = pairs->label[index];
    r->ids[0] = s->cls_id;
    for (int64_t t = 0; t < la; t++) r->ids[1 + t] = s->tokens[a0 + t];
    r->ids[la + 1] = s->sep_id;
    for (int64_t t = 0; t < lb; t++) r->ids[la + 2 + t] = s->tokens[b0 + t];
    r->ids[length - 1] = s->sep_id;
    for (int64_t c = 0; c < length; c++) {
        int special = c == 0 || c == la + 1 || c == length - 1;
        if (!special && (r->ids[c] < 0 || r->ids[c] >= s->vocab_size)) return -2;
        r->boundary[c] = special ? 1 : s->word_start[r->ids[c]] != 0;
        r->segment[c] = c >= la + 2;
    }
    int64_t masked = 0;
    if (!s->no_masking) masked = mask_row(s, r, length, la, derive_key(s->mask_key, index), stats);
    for (int64_t k = masked; k < predictions; k++) {
        r->positions[k] = 0;
        r->masked_ids[k] = 0;
        r->weights[k] = 0.0f;
    }
    stats->instances++;
    stats->tokens += length;
    stats->padding += seq - length;
    stats->label_1 += label;

    Buf *body = &r->body, *payload = &r->payload;
    body->len = 0;
    put_varints_entry(body, payload, "input_ids", r->ids, length, seq - length);
    memset(r->fixed, 1, length);
    memset(r->fixed + length, 0, seq - length);
    put_entry(body, "input_mask", INT64_LIST, r->fixed, seq);
    put_flags_entry(body, r->fixed, "segment_ids", r->segment, length, seq - length);
    if (s->token_boundary) put_flags_entry(body, r->fixed, "token_boundary", r->boundary, length, seq - length);
    put_varints_entry(body, payload, "masked_lm_positions", r->positions, predictions, 0);
    put_varints_entry(body, payload, "masked_lm_ids", r->masked_ids, predictions, 0);
    payload->len = 0;
    for (int64_t k = 0; k < predictions; k++) {
        uint32_t bits;
        memcpy(&bits, &r->weights[k], 4);
        for (int i = 0; i < 4; i++) payload->data[payload->len++] = (unsigned char)(bits >> (8 * i));
    }
    put_entry(body, "masked_lm_weights", FLOAT_LIST, payload->data, payload->len);
    unsigned char label_byte = (unsigned char)label;
    put_entry(body, "next_sentence_labels", INT64_LIST, &label_byte, 1);

    size_t record = 1 + varint_size(body->len) + body->len;
    if (reserve(out, record + 16) < 0) return -1;
    size_t header = out->len;
    if (s->frame) {
        for (int i = 0; i < 8; i++) out->data[out->len++] = (unsigned char)((uint64_t)record >> (8 * i));
        put_masked_crc(out, out->data + header, 8);
    }
    size_t start = out->len;
    out->data[out->len++] = 0x0a;
    put_varint(out, body->len);
    put_bytes(out, body->data, body->len);
    if (s->frame) put_masked_crc(out, out->data + start, record);
    return 0;
}

/* Pairs of every document, the shuffled output order, then one record per pair. 0, or -1 out of memory, -2 a token
 * id outside the vocabulary. */
static int run_task(const Settings *s, const int64_t *documents, Py_ssize_t num_task_documents, Buf *out, Buf *ends,
                    Stats *stats) {
    Pairs pairs = {0};
    Row row;
    int64_t *order = NULL;
    int rc = -1;
    Stream rng = {s->pair_key, 0};
    int64_t seq = s->max_seq_length, predictions = s->max_predictions;
    if (row_alloc(&row, seq, predictions, s->max_ngram) < 0) goto done;
    /* Room for the largest record body: 8 entry prefixes, the varint payloads, the flags, the weights. */
    if (reserve(&row.body, 8 * 64 + 10 * seq + 4 * seq + 24 * predictions + 64) < 0) goto done;
    if (reserve(&row.payload, 10 * (seq > predictions ? seq : predictions) + 4 * predictions + 16) < 0) goto done;
    for (Py_ssize_t d = 0; d < num_task_documents; d++)
        if (document_pairs(s, &pairs, &rng, documents[d]) < 0) goto done;
    order = malloc((pairs.len ? pairs.len : 1) * sizeof(int64_t));
    if (!order || reserve(ends, pairs.len * sizeof(int64_t)) < 0) goto done;
    for (size_t i = 0; i < pairs.len; i++) order[i] = (int64_t)i;
    for (size_t i = pairs.len; i-- > 1;) {
        int64_t j = below(draw(s->shuffle_key, i), (int64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int64_t count = (int64_t)pairs.len, shards = s->num_shards;
    for (int64_t shard = 0; shard < shards; shard++) {
        for (int64_t p = ((shard - s->position) % shards + shards) % shards; p < count; p += shards) {
            int written = write_record(s, &row, &pairs, (size_t)order[p], out, stats);
            if (written < 0) {
                rc = written;
                goto done;
            }
            int64_t end = (int64_t)out->len;
            put_bytes(ends, &end, sizeof(end));
        }
    }
    rc = 0;
done:
    free(order);
    row_free(&row);
    pairs_free(&pairs);
    return rc;
}

static int check_buffer(Py_buffer *b, Py_ssize_t item, const char *name) {
    if (b->len % item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items", name, b->len, item);
        return -1;
    }
    return 0;
}

static PyObject *build(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer tokens = {0}, sentence_starts = {0}, document_starts = {0}, word_start = {0}, replacement_ids = {0},
              documents = {0}, thresholds = {0};
    unsigned long long pair_key, mask_key, shuffle_key;
    long long seq, predictions, max_ngram, cls_id, sep_id, mask_id, num_shards, position;
    Settings s;
    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*KKKpppppLLLLLLddLL", &tokens, &sentence_starts, &document_starts,
                          &word_start, &replacement_ids, &documents, &thresholds, &pair_key, &mask_key, &shuffle_key,
                          &s.sop, &s.token_boundary, &s.whole_words, &s.no_masking, &s.frame, &seq, &predictions,
                          &max_ngram, &cls_id, &sep_id, &mask_id, &s.masked_lm_prob, &s.short_seq_prob, &num_shards,
                          &position))
        return NULL;
    PyObject *result = NULL;
    Buf out = {0}, ends = {0};
    Stats stats;
    memset(&stats, 0, sizeof(stats));
    if (check_buffer(&tokens, 4, "tokens") || check_buffer(&sentence_starts, 8, "sentence_starts") ||
        check_buffer(&document_starts, 8, "document_starts") || check_buffer(&replacement_ids, 8, "replacement_ids") ||
        check_buffer(&documents, 8, "documents") || check_buffer(&thresholds, 8, "thresholds"))
        goto done;
    s.tokens = tokens.buf;
    s.sentence_starts = sentence_starts.buf;
    s.document_starts = document_starts.buf;
    s.word_start = word_start.buf;
    s.replacement_ids = replacement_ids.buf;
    s.thresholds = thresholds.buf;
    s.num_tokens = tokens.len / 4;
    s.num_sentences = sentence_starts.len / 8 - 1;
    s.num_documents = document_starts.len / 8 - 1;
    s.vocab_size = word_start.len;
    s.num_replacements = replacement_ids.len / 8;
    s.num_thresholds = thresholds.len / 8;
    s.pair_key = pair_key;
    s.mask_key = mask_key;
    s.shuffle_key = shuffle_key;
    s.max_seq_length = seq;
    s.max_predictions = predictions;
    s.max_ngram = max_ngram;
    s.cls_id = cls_id;
    s.sep_id = sep_id;
    s.mask_id = mask_id;
    s.num_shards = num_shards;
    s.position = position;
    const int64_t *task_documents = documents.buf;
    Py_ssize_t num_task_documents = documents.len / 8;
    if (seq < 5 || predictions < 1 || num_shards < 1 || position < 0 || max_ngram < 1 || max_ngram > 64 ||
        s.num_thresholds != max_ngram - 1 || s.num_replacements < 1 || s.num_sentences < 0 || s.num_documents < 1 ||
        s.document_starts[s.num_documents] > s.num_sentences || s.sentence_starts[s.num_sentences] > s.num_tokens) {
        PyErr_SetString(PyExc_ValueError, "inconsistent corpus arrays or settings");
        goto done;
    }
    for (Py_ssize_t d = 0; d < num_task_documents; d++) {
        if (task_documents[d] < 0 || task_documents[d] >= s.num_documents) {
            PyErr_Format(PyExc_ValueError, "document %lld outside the corpus", (long long)task_documents[d]);
            goto done;
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_task(&s, task_documents, num_task_documents, &out, &ends, &stats);
    Py_END_ALLOW_THREADS
    if (rc == -1) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc == -2) {
        PyErr_SetString(PyExc_ValueError, "a token id outside the vocabulary");
        goto done;
    }
    PyObject *ngrams = PyList_New(max_ngram), *draws = PyList_New(max_ngram);
    if (ngrams && draws) {
        for (long long n = 0; n < max_ngram; n++) {
            PyList_SET_ITEM(ngrams, n, PyLong_FromLongLong(stats.ngrams[n]));
            PyList_SET_ITEM(draws, n, PyLong_FromLongLong(stats.ngram_draws[n]));
        }
        result = Py_BuildValue("y#y#{sLsLsLsLsLsLsLsLsOsO}", out.data ? (const char *)out.data : "",
                               (Py_ssize_t)out.len, ends.data ? (const char *)ends.data : "", (Py_ssize_t)ends.len,
                               "instances", stats.instances, "tokens", stats.tokens, "padding", stats.padding,
                               "masked", stats.masked, "replaced_mask", stats.replaced_mask, "replaced_random",
                               stats.replaced_random, "kept", stats.kept, "label_1", stats.label_1, "ngrams", ngrams,
                               "ngram_draws", draws);
    }
    Py_XDECREF(ngrams);
    Py_XDECREF(draws);
done:
    free(out.data);
    free(ends.data);
    PyBuffer_Release(&tokens);
    PyBuffer_Release(&sentence_starts);
    PyBuffer_Release(&document_starts);
    PyBuffer_Release(&word_start);
    PyBuffer_Release(&replacement_ids);
    PyBuffer_Release(&documents);
    PyBuffer_Release(&thresholds);
    return result;
}

/* flatten(ids) -> (tokens, lengths): a list of lists of token ids (SentencePiece's and tokenizers' batch output) as
 * one int32 buffer and the int64 length of each list, without a Python object per token. */
static PyObject *flatten(PyObject *self, PyObject *ids) {
    (void)self;
    PyObject *sequence = PySequence_Fast(ids, "flatten expects a list of lists of ints");
    if (!sequence) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence), total = 0;
    PyObject **rows = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyList_Check(rows[i])) {
            Py_DECREF(sequence);
            PyErr_SetString(PyExc_TypeError, "flatten expects a list of lists of ints");
            return NULL;
        }
        total += PyList_GET_SIZE(rows[i]);
    }
    PyObject *tokens = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int32_t));
    PyObject *lengths = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (!tokens || !lengths) goto fail;
    int32_t *out = (int32_t *)PyBytes_AS_STRING(tokens);
    int64_t *length = (int64_t *)PyBytes_AS_STRING(lengths);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t n = PyList_GET_SIZE(rows[i]);
        PyObject **items = ((PyListObject *)rows[i])->ob_item;
        for (Py_ssize_t k = 0; k < n; k++) {
            long value = PyLong_AsLong(items[k]);
            if (value == -1 && PyErr_Occurred()) goto fail;
            if (value < INT32_MIN || value > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "a token id does not fit in int32");
                goto fail;
            }
            *out++ = (int32_t)value;
        }
        length[i] = n;
    }
    Py_DECREF(sequence);
    return Py_BuildValue("(NN)", tokens, lengths);
fail:
    Py_DECREF(sequence);
    Py_XDECREF(tokens);
    Py_XDECREF(lengths);
    return NULL;
}

/* crc32c_of(data, portable) -> int: the CRC-32C this module frames records with, by the table (portable=True) or
 * by whatever this machine uses, for tests. */
static PyObject *crc32c_of(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    int portable;
    if (!PyArg_ParseTuple(args, "y*p", &data, &portable)) return NULL;
    uint32_t value = portable ? crc32c_table(data.buf, data.len) : crc32c(data.buf, data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(value);
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS,
     "build(tokens, sentence_starts, document_starts, word_start, replacement_ids, documents, thresholds, pair_key, "
     "mask_key, shuffle_key, sop, token_boundary, whole_words, no_masking, frame, max_seq_length, "
     "max_predictions_per_seq, max_ngram, cls_id, sep_id, mask_id, masked_lm_prob, short_seq_prob, num_shards, "
     "position) -> (records, ends, stats): one task's records joined (grouped by shard), their int64 end offsets, "
     "and the counts."},
    {"flatten", flatten, METH_O,
     "flatten(ids) -> (tokens, lengths): lists of token ids as one int32 buffer, and the int64 length of each."},
    {"crc32c_of", crc32c_of, METH_VARARGS,
     "crc32c_of(data, portable) -> int: CRC-32C of data, by the table (portable) or as records are framed here."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_instances",
                                    "Compiled instance builder of create-pretraining-data.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__instances(void) {
    crc_init();
#ifdef HAVE_CRC32C_INSTRUCTION
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) crc32c = crc32c_sse42;
#endif
    return PyModule_Create(&module);
}
