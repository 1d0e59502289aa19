/* The compiled instance builder of `keras-albert create-pretraining-data`.
 *
 * One call, `build(job)`, builds one task (a dupe copy of a chunk of documents): segment pairs, truncation, masking,
 * serialization as tf.train.Example and TFRecord framing, in one pass with no Python objects per instance. `job` is
 * an `instances.BuildJob`, whose attributes this module reads by name. It is the exact counterpart of the NumPy
 * builder (`pairs.PairMaker`, `numpy_builder`, `masking.mask_rows`), which stays as the fallback when this module was
 * not compiled: both draw the same numbers from the same counter-based streams (splitmix64 of key + counter), so the
 * records are byte-identical whichever one runs (tested). The CRC-32Cs of the framing come from google-crc32c: its
 * C function `crc32c_value`, called here through the address in `job.crc32c_function`, or, where that is 0, in
 * Python after the call (`encoding.fill_checksums`), the slots being left zero here.
 *
 * Streams: pairing draws sequentially from `pair_key`; row r (in pair order) masks with the stream
 * key(mask_key, r): step s of its visit draws counters 2s (the unit visited, an incremental Fisher-Yates shuffle)
 * and 2s+1 (the n-gram length), masked token k draws REPLACE + 2k (80/10/10) and REPLACE + 2k + 1 (the random
 * token); the output order is a Fisher-Yates shuffle drawing counter i from `shuffle_key`, then regrouped by shard
 * (position p of the shuffled records goes to shard (task position + p) mod num_shards; `plan.shard_major`).
 *
 * One file of ~750 lines on purpose: the loops over pairs, masks and records call the stream and buffer helpers
 * millions of times per run and rely on the compiler inlining them, which one translation unit gives without link-time
 * optimization. Its sections follow the Python modules: streams, buffers, tf.train.Example (`encoding`), pairs
 * (`pairs`), masking (`masking`), records and the task (`numpy_builder`), reading the job (`instances.BuildJob`).
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
    int sop, token_boundary, whole_words, no_masking;
    int64_t max_seq_length, max_predictions, max_ngram, cls_id, sep_id, mask_id, num_shards, position;
    double masked_lm_prob, short_seq_prob;
    uint32_t (*crc32c)(const uint8_t *, size_t); /* google-crc32c's `crc32c_value`, or NULL: slots left zero */
} Settings;

typedef struct {
    int64_t instances, tokens, padding, masked, replaced_mask, replaced_random, kept, label_1;
    int64_t ngrams[64], ngram_draws[64];
} Stats;

/* Google's `truncate_seq_pair` in closed form (see `pairs.PairMaker._add`), then the pair is kept. */
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

/* Google's `create_instances_from_document` (see `pairs.PairMaker.document`). Returns -1 when out of memory. */
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
 * `masking.mask_rows`): fills positions, masked_ids and weights, and replaces the chosen tokens in r->ids. Returns the
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

/* The masked CRC-32C that TFRecord framing stores, little-endian, at `slot`. */
static void put_masked_crc(const Settings *s, unsigned char *slot, const unsigned char *data, size_t n) {
    uint32_t v = s->crc32c(data, n);
    uint32_t masked = ((v >> 15) | (v << 17)) + 0xA282EAD8u;
    for (int i = 0; i < 4; i++) slot[i] = (unsigned char)(masked >> (8 * i));
}

/* One pair as a serialized tf.train.Example framed as a TFRecord (length, its CRC, data, the data's CRC), appended
 * to `out`; the CRC slots stay zero without `s->crc32c`. */
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
    unsigned char *header = out->data + out->len;
    for (int i = 0; i < 8; i++) out->data[out->len++] = (unsigned char)((uint64_t)record >> (8 * i));
    memset(out->data + out->len, 0, 4);
    out->len += 4;
    unsigned char *data = out->data + out->len;
    out->data[out->len++] = 0x0a;
    put_varint(out, body->len);
    put_bytes(out, body->data, body->len);
    memset(out->data + out->len, 0, 4);
    out->len += 4;
    if (s->crc32c) {
        put_masked_crc(s, header + 8, header, 8);
        put_masked_crc(s, data + record, data, record);
    }
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

/* ---------------------------------------------------------------------------------------------------------------- */
/* Reading the job: attributes by dotted name ("corpus.tokens"), so that Python passes one object, not a long
 * positional argument list. */

/* A new reference to job.<path>, or NULL with an exception set. */
static PyObject *attribute(PyObject *job, const char *path) {
    PyObject *value = job;
    Py_INCREF(value);
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        PyObject *name = PyUnicode_FromStringAndSize(path, (Py_ssize_t)n);
        PyObject *next = name ? PyObject_GetAttr(value, name) : NULL;
        Py_XDECREF(name);
        Py_DECREF(value);
        if (!next) return NULL;
        value = next;
        path += n + (dot != NULL);
    }
    return value;
}

/* A contiguous buffer of `item`-byte items. */
static int get_array(PyObject *job, const char *path, Py_buffer *view, Py_ssize_t item) {
    PyObject *value = attribute(job, path);
    if (!value) return -1;
    int rc = PyObject_GetBuffer(value, view, PyBUF_C_CONTIGUOUS);
    Py_DECREF(value);
    if (rc < 0) return -1;
    if (view->len % item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items", path, view->len, item);
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

static int get_int(PyObject *job, const char *path, int64_t *out) {
    PyObject *value = attribute(job, path);
    if (!value) return -1;
    long long number = PyLong_AsLongLong(value);
    Py_DECREF(value);
    if (number == -1 && PyErr_Occurred()) return -1;
    *out = number;
    return 0;
}

static int get_key(PyObject *job, const char *path, uint64_t *out) {
    PyObject *value = attribute(job, path);
    if (!value) return -1;
    unsigned long long number = PyLong_AsUnsignedLongLong(value);
    Py_DECREF(value);
    if (number == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = number;
    return 0;
}

static int get_double(PyObject *job, const char *path, double *out) {
    PyObject *value = attribute(job, path);
    if (!value) return -1;
    *out = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int get_flag(PyObject *job, const char *path, int *out) {
    PyObject *value = attribute(job, path);
    if (!value) return -1;
    *out = PyObject_IsTrue(value);
    Py_DECREF(value);
    return *out < 0 ? -1 : 0;
}

enum { TOKENS, SENTENCE_STARTS, DOCUMENT_STARTS, WORD_START, REPLACEMENT_IDS, DOCUMENTS, THRESHOLDS, ARRAYS };

/* The job's arrays: the name each is read by and the size of its items. */
static const struct {
    const char *path;
    Py_ssize_t item;
} array_fields[ARRAYS] = {
    {"corpus.tokens", 4},         {"corpus.sentence_starts", 8}, {"corpus.document_starts", 8},
    {"tables.word_start", 1},     {"tables.replacement_ids", 8}, {"documents", 8},
    {"ngram_thresholds", 8},
};

/* Fills `s` from the job; 0, or -1 with an exception set. `arrays` hold the buffers, released by the caller. */
static int read_job(PyObject *job, Settings *s, Py_buffer *arrays) {
    for (int i = 0; i < ARRAYS; i++)
        if (get_array(job, array_fields[i].path, &arrays[i], array_fields[i].item) < 0) return -1;
    if (get_key(job, "pair_key", &s->pair_key) || get_key(job, "mask_key", &s->mask_key) ||
        get_key(job, "shuffle_key", &s->shuffle_key) || get_flag(job, "sentence_order", &s->sop) ||
        get_flag(job, "token_boundary", &s->token_boundary) || get_flag(job, "whole_words", &s->whole_words) ||
        get_flag(job, "settings.no_masking", &s->no_masking) ||
        get_int(job, "settings.max_seq_length", &s->max_seq_length) ||
        get_int(job, "settings.max_predictions_per_seq", &s->max_predictions) ||
        get_int(job, "settings.max_ngram", &s->max_ngram) || get_int(job, "settings.num_shards", &s->num_shards) ||
        get_double(job, "settings.masked_lm_prob", &s->masked_lm_prob) ||
        get_double(job, "settings.short_seq_prob", &s->short_seq_prob) || get_int(job, "position", &s->position) ||
        get_int(job, "tables.cls_id", &s->cls_id) || get_int(job, "tables.sep_id", &s->sep_id) ||
        get_int(job, "tables.mask_id", &s->mask_id))
        return -1;
    uint64_t crc32c_address;
    if (get_key(job, "crc32c_function", &crc32c_address) < 0) return -1;
    s->crc32c = (uint32_t(*)(const uint8_t *, size_t))(uintptr_t)crc32c_address;
    s->tokens = arrays[TOKENS].buf;
    s->sentence_starts = arrays[SENTENCE_STARTS].buf;
    s->document_starts = arrays[DOCUMENT_STARTS].buf;
    s->word_start = arrays[WORD_START].buf;
    s->replacement_ids = arrays[REPLACEMENT_IDS].buf;
    s->thresholds = arrays[THRESHOLDS].buf;
    s->num_tokens = arrays[TOKENS].len / 4;
    s->num_sentences = arrays[SENTENCE_STARTS].len / 8 - 1;
    s->num_documents = arrays[DOCUMENT_STARTS].len / 8 - 1;
    s->vocab_size = arrays[WORD_START].len;
    s->num_replacements = arrays[REPLACEMENT_IDS].len / 8;
    s->num_thresholds = arrays[THRESHOLDS].len / 8;
    if (s->max_seq_length < 5 || s->max_predictions < 1 || s->num_shards < 1 || s->position < 0 ||
        s->max_ngram < 1 || s->max_ngram > 64 || s->num_thresholds != s->max_ngram - 1 || s->num_replacements < 1 ||
        s->num_sentences < 0 || s->num_documents < 1 || s->document_starts[s->num_documents] > s->num_sentences ||
        s->sentence_starts[s->num_sentences] > s->num_tokens) {
        PyErr_SetString(PyExc_ValueError, "inconsistent corpus arrays or settings");
        return -1;
    }
    const int64_t *documents = arrays[DOCUMENTS].buf;
    for (Py_ssize_t d = 0; d < arrays[DOCUMENTS].len / 8; d++) {
        if (documents[d] < 0 || documents[d] >= s->num_documents) {
            PyErr_Format(PyExc_ValueError, "document %lld outside the corpus", (long long)documents[d]);
            return -1;
        }
    }
    return 0;
}

static PyObject *build(PyObject *self, PyObject *job) {
    (void)self;
    Py_buffer arrays[ARRAYS];
    memset(arrays, 0, sizeof(arrays));
    Settings s;
    memset(&s, 0, sizeof(s));
    PyObject *result = NULL;
    Buf out = {0}, ends = {0};
    Stats stats;
    memset(&stats, 0, sizeof(stats));
    if (read_job(job, &s, arrays) < 0) goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_task(&s, arrays[DOCUMENTS].buf, arrays[DOCUMENTS].len / 8, &out, &ends, &stats);
    Py_END_ALLOW_THREADS
    if (rc == -1) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc == -2) {
        PyErr_SetString(PyExc_ValueError, "a token id outside the vocabulary");
        goto done;
    }
    PyObject *ngrams = PyList_New(s.max_ngram), *draws = PyList_New(s.max_ngram);
    if (ngrams && draws) {
        for (int64_t n = 0; n < s.max_ngram; n++) {
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
    for (int i = 0; i < ARRAYS; i++)
        if (arrays[i].obj) PyBuffer_Release(&arrays[i]);
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

static PyMethodDef methods[] = {
    {"build", build, METH_O,
     "build(job) -> (records, ends, stats): one task's records (`job` is an `instances.BuildJob`), framed as TFRecords "
     "(CRC-32C slots zero when job.crc32c_function is 0) and grouped by shard, their int64 end offsets, and the counts."},
    {"flatten", flatten, METH_O,
     "flatten(ids) -> (tokens, lengths): lists of token ids as one int32 buffer, and the int64 length of each."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_instances",
                                    "Compiled instance builder of create-pretraining-data.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__instances(void) { return PyModule_Create(&module); }
