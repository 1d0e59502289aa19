"""Segment pairs: Google's `create_instances_from_document` on sentence index ranges, for the NumPy builder.

`document_pairs` in `_instances.c` is the same code, drawing the same numbers in the same order.
"""

from keras_albert.data.pretraining.streams import Stream


class PairMaker:
    """Collects the segment pairs and labels of a task's documents, as token index ranges into the corpus.

    Args:
        corpus: `corpus.Corpus`.
        tables: `instances.Tables`. Word starts, for cutting a lone sentence.
        settings: `PretrainingDataSettings`.
        pair_key: int. The task's pairing stream; every draw comes from it, in order.
    """

    def __init__(self, corpus, tables, settings, pair_key):
        self.corpus, self.tables, self.settings, self.rng = corpus, tables, settings, Stream(pair_key)
        self.sop = settings.sentence_order
        self.max_tokens = settings.max_seq_length - 3
        self.a_start, self.a_end, self.b_start, self.b_end, self.labels = [], [], [], [], []

    def document(self, document):
        corpus, rng = self.corpus, self.rng
        starts = corpus.sentence_view  # Python ints, fast to index
        first, last = corpus.document_view[document], corpus.document_view[document + 1]
        target = self.max_tokens
        if rng.random() < self.settings.short_seq_prob:
            target = rng.randint(2, self.max_tokens)
        chunk_first, chunk_length = first, 0
        i = first
        while i < last:
            chunk_length += starts[i + 1] - starts[i]
            if i == last - 1 or chunk_length >= target:
                segments = i + 1 - chunk_first
                a_end = chunk_first + (rng.randint(1, segments - 1) if segments >= 2 else 1)
                a = (starts[chunk_first], starts[a_end])
                label = 0
                if self.sop:
                    if segments >= 2:
                        b = (starts[a_end], starts[i + 1])
                    else:
                        a, b = self._split_segment(a)
                    if rng.random() < 0.5:
                        a, b, label = b, a, 1
                elif segments == 1 or rng.random() < 0.5:
                    label = 1
                    b = self._random_segment(document, target - (a[1] - a[0]))
                    i -= i + 1 - a_end  # the unused sentences start the next chunk
                else:
                    b = (starts[a_end], starts[i + 1])
                if a is not None and a[1] > a[0] and b[1] > b[0]:
                    self._add(a, b, label)
                chunk_first, chunk_length = i + 1, 0
            i += 1

    def _split_segment(self, a):
        """Cut a lone sentence at a random word start (uniform over word starts, by rejection sampling)."""
        start, end = a
        if end - start < 2:
            return None, None
        tokens, word_start, randint = self.corpus.tokens, self.tables.word_start, self.rng.randint
        cut = randint(start + 1, end - 1)
        for _ in range(64):
            if word_start[tokens[cut]]:
                break
            cut = randint(start + 1, end - 1)
        return (start, cut), (cut, end)

    def _random_segment(self, document, target_length):
        corpus, rng = self.corpus, self.rng
        starts = corpus.sentence_view
        other = document
        for _ in range(10):
            other = rng.randint(0, corpus.num_documents - 1)
            if other != document:
                break
        first, last = corpus.document_view[other], corpus.document_view[other + 1]
        start = rng.randint(first, last - 1)
        end = start
        while end < last:
            end += 1
            if starts[end] - starts[start] >= target_length:
                break
        return starts[start], starts[end]

    def _add(self, a, b, label):
        """Google's `truncate_seq_pair`, then record the pair.

        Google removes one token at a time from the longer segment (B on ties), from its front or back with
        probability 0.5 each. The same in closed form: the counts removed from A and B follow from the lengths, and
        the share taken from each front is Binomial(removed, 0.5), drawn as the number of set random bits.
        """
        (a0, a1), (b0, b1) = a, b
        length_a, length_b = a1 - a0, b1 - b0
        excess = length_a + length_b - self.max_tokens
        if excess > 0:
            if length_a > length_b:
                from_a = min(excess, length_a - length_b)
                rest = excess - from_a
                from_a, from_b = from_a + rest // 2, (rest + 1) // 2
            else:
                from_b = min(excess, length_b - length_a + 1)
                rest = excess - from_b
                from_a, from_b = (rest + 1) // 2, from_b + rest // 2
            front_a = self.rng.bits(from_a) if from_a else 0
            front_b = self.rng.bits(from_b) if from_b else 0
            a0, a1 = a0 + front_a, a1 - (from_a - front_a)
            b0, b1 = b0 + front_b, b1 - (from_b - front_b)
        self.a_start.append(a0)
        self.a_end.append(a1)
        self.b_start.append(b0)
        self.b_end.append(b1)
        self.labels.append(label)
