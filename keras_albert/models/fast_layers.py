"""A faster `call` for keras-hub's `TransformerEncoder`, on the same variables.

keras-hub's encoder layer computes self-attention through Keras' `MultiHeadAttention` (three `EinsumDense`
projections, a boolean mask broadcast to [batch, heads, query, key] and applied with `where` in every layer) and
its feed-forward block through two `Dense` layers on 3-D tensors. On a CPU without XLA each of those small
element-wise steps is its own kernel, forward and backward. `FastTransformerEncoder.call` computes the same function
with fewer kernels:
- Q, K and V as one [batch * seq, hidden] x [hidden, 3 * hidden] matmul (the three kernels concatenated by
  `prepare()`, so the variables, their names and shapes, stay those of the keras-hub layer), and 2-D matmuls with
  `bias_add`, which oneDNN fuses (in float32);
- every matmul's gradient to its input multiplies by the kernel transposed beforehand (`_linear`): oneDNN
  multiplies by a plain right operand faster than by a transposed one, and `backbones.encode_at` prepares the
  concatenated and transposed kernels once per layer object, so ALBERT's shared layer does it once per forward
  pass for its 12 calls;
- the element-wise blocks between the matmuls (scale + padding mask + softmax, bias + GELU, residual + layer norm)
  each compiled with XLA into one or two loops, forward and backward, with hand-written gradients, while the
  matmuls stay in oneDNN, which on a CPU is faster than an XLA-compiled step's. The padding mask is an additive
  [batch, 1, 1, key] bias instead of a boolean `where` over [batch, heads, query, key].

`call(..., query_positions=rows)` returns only those rows ([batch, n, hidden]) and computes the queries, the
attention output and the feed-forward block for them alone: `PretrainingModel` calls its last layer so, its heads
reading [CLS] and the masked positions (`backbones.encode_at`).

Issue 12 measured it with `python benchmarks/train_throughput.py --models albert_base --seqs 128 --batch 8`, and
`benchmarks/profile_train_step.py` shows where an update's time goes.

`use_fast_encoder(backbone)` switches the encoder layers of a built keras-hub backbone to it (a class change, no new
variables); `AlbertEncoder` and `BertEncoder` do so unless `fast_encoder=False`. Outputs and gradients equal the
keras-hub layer's to float32 round-off (tests/test_fast_encoder.py checks it against keras-hub's own call).
"""

import math

import keras
import keras_hub
import tensorflow as tf

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_MASKED = -1e9  # added to the logits of padding keys: exp underflows to exactly 0 in float32


def _gelu_and_derivative(x, approximate):
    """GELU of float32 `x` and its derivative: the tanh approximation (`tf.nn.gelu(x, approximate=True)`,
    ALBERT's `gelu_new`) or the exact erf form (BERT's `gelu`)."""
    if approximate:
        t = tf.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)))
        y = 0.5 * x * (1.0 + t)
        dy_dx = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
        return y, dy_dx
    cdf = 0.5 * (1.0 + tf.math.erf(x * _INV_SQRT_2))
    return x * cdf, cdf + x * tf.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))


# The element-wise blocks are compiled with XLA one by one, forward and backward each into one or two loops, while
# the matmuls between them stay in oneDNN (which, on CPU, is faster than XLA's own). Statistics are in float32.
@tf.function(jit_compile=True)
def _bias_gelu_forward(x, bias, approximate):
    y, _ = _gelu_and_derivative(tf.cast(x, "float32") + tf.cast(bias, "float32"), approximate)
    return tf.cast(y, x.dtype)


@tf.function(jit_compile=True)
def _bias_gelu_backward(x, bias, dy, approximate):
    _, dy_dx = _gelu_and_derivative(tf.cast(x, "float32") + tf.cast(bias, "float32"), approximate)
    dx = tf.cast(dy, "float32") * dy_dx
    return tf.cast(dx, x.dtype), tf.cast(tf.reduce_sum(dx, 0), bias.dtype)


def _bias_gelu(x, bias, approximate):
    """`gelu(x + bias)` over a [rows, units] `x`."""

    @tf.custom_gradient
    def forward(x, bias):
        return _bias_gelu_forward(x, bias, approximate), lambda dy: _bias_gelu_backward(x, bias, dy, approximate)

    return forward(x, bias)


@tf.function(jit_compile=True)
def _add_layer_norm_forward(x, y, gamma, beta, epsilon):
    """Keras' `LayerNormalization` of `x + y` over the last axis (the sum in the compute dtype, as keras-hub adds
    the residual; statistics in float32), with the row statistics the backward pass needs."""
    s = tf.cast(x + y, "float32")
    mean = tf.reduce_mean(s, -1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(s, mean), -1, keepdims=True)
    inv = tf.math.rsqrt(variance + epsilon)
    scale = inv * gamma
    out = s * scale + (beta - mean * scale)
    return tf.cast(out, x.dtype), s, mean, inv


@tf.function(jit_compile=True)
def _add_layer_norm_backward(s, mean, inv, gamma, dout, dtype):
    normed = (s - mean) * inv
    dout = tf.cast(dout, "float32")
    g = dout * gamma
    ds = inv * (g - tf.reduce_mean(g, -1, keepdims=True) - normed * tf.reduce_mean(g * normed, -1, keepdims=True))
    return tf.cast(ds, dtype), tf.reduce_sum(dout * normed, 0), tf.reduce_sum(dout, 0)


def _add_layer_norm(x, y, gamma, beta, epsilon):
    """`LayerNormalization(x + y)` over [rows, units] tensors; `gamma` and `beta` float32."""

    @tf.custom_gradient
    def forward(x, y, gamma, beta):
        out, s, mean, inv = _add_layer_norm_forward(x, y, gamma, beta, epsilon)

        def grad(dout):
            ds, dgamma, dbeta = _add_layer_norm_backward(s, mean, inv, gamma, dout, x.dtype)
            return ds, ds, dgamma, dbeta

        return out, grad

    return forward(x, y, gamma, beta)


@keras.saving.register_keras_serializable(package="keras_albert")
def gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


@tf.function(jit_compile=True)
def _scaled_masked_softmax_forward(logits, bias, scale):
    # in float32, as Keras' dot_product_attention computes it
    probs = tf.nn.softmax(tf.cast(logits, "float32") * scale + bias)
    return tf.cast(probs, logits.dtype), probs


@tf.function(jit_compile=True)
def _scaled_masked_softmax_backward(probs, dprobs, scale, dtype):
    dprobs = tf.cast(dprobs, "float32")
    return tf.cast(probs * (dprobs - tf.reduce_sum(dprobs * probs, -1, keepdims=True)) * scale, dtype)


def _scaled_masked_softmax(logits, bias, scale):
    """`softmax(logits * scale + bias)` over the last axis; `bias` (float32) is not differentiated."""

    @tf.custom_gradient
    def forward(logits):
        probs, probs32 = _scaled_masked_softmax_forward(logits, bias, scale)
        return probs, lambda dprobs: _scaled_masked_softmax_backward(probs32, dprobs, scale, logits.dtype)

    return forward(logits)


def _add_bias(x, bias):
    """`x + bias`: `bias_add` in float32, which oneDNN fuses into the matmul before it; a plain add in 16 bits, whose
    gradient sums in float32 (`BiasAddGrad` accumulates bfloat16 in bfloat16, visibly less accurately)."""
    return tf.nn.bias_add(x, bias) if x.dtype == tf.float32 else x + bias


def _linear(x, kernel, kernel_t, bias=None):
    """`x @ kernel (+ bias)` over a [rows, in] `x`, whose gradient to `x` multiplies by `kernel_t`, the kernel
    already transposed ([units, in]). oneDNN multiplies by a plain right operand faster than by a transposed one
    (`dy @ kernel^T`, TensorFlow's own gradient; 1024 x 3072 x 768: 313 vs 266 GFLOP/s on the 2-core Xeon of issue
    12), and `FastTransformerEncoder.prepare` transposes once for all the calls of an ALBERT layer group."""

    def forward(x, kernel, *bias_):
        y = tf.matmul(x, kernel)
        y = _add_bias(y, bias_[0]) if bias_ else y  # inside, so that oneDNN still fuses the bias into the matmul

        def grad(dy):
            dx, dkernel = tf.matmul(dy, kernel_t), tf.matmul(x, dy, transpose_a=True)
            return (dx, dkernel, tf.reduce_sum(dy, 0)) if bias_ else (dx, dkernel)

        return y, grad

    return tf.custom_gradient(forward)(x, kernel, *([] if bias is None else [bias]))


def _transposed(kernel):
    """`tf.transpose(kernel)` behind a `Snapshot`: Grappler folds a transpose that feeds a matmul directly back
    into the matmul's `transpose_b`, which is what `_linear` avoids."""
    return tf.raw_ops.Snapshot(input=tf.transpose(kernel))


def _heads(projected, shape):
    """[rows, n * heads * head_dim] projections as n [batch, heads, seq, head_dim] tensors; `shape` is [batch,
    seq, n, heads, head_dim]."""
    return tf.unstack(tf.transpose(tf.reshape(projected, shape), [2, 0, 3, 1, 4]))


def _gelu_kind(activation):
    """True for the tanh-approximate GELU, False for the exact one, None for another activation."""
    if activation is gelu_approximate or activation is keras_hub.src.utils.keras_utils.gelu_approximate:
        return True
    if activation is keras.activations.gelu:  # Keras' default is approximate=False
        return False
    return None


@keras.saving.register_keras_serializable(package="keras_albert")
class FastTransformerEncoder(keras_hub.layers.TransformerEncoder):
    """keras-hub's `TransformerEncoder` (post-layer-norm, as in ALBERT and BERT) computed with fewer kernels.

    Same constructor, variables and config as `keras_hub.layers.TransformerEncoder`; only `call` differs. Calls
    it does not cover (`normalize_first`, a custom `attention_mask`, `return_attention_scores`) run keras-hub's own.

    Args:
        **kwargs: the arguments of `keras_hub.layers.TransformerEncoder`.

    Example:
    ```python
    layer = FastTransformerEncoder(intermediate_dim=64, num_heads=2)
    outputs = layer(np.ones((2, 8, 16), "float32"), padding_mask=np.ones((2, 8), "int32"))
    ```
    """

    def prepare(self):
        """The weights `call` multiplies by, in the compute dtype: the attention's query, key and value kernels as
        one [hidden, 3 * hidden] matrix and its bias, and every kernel also transposed (for `_linear`'s
        gradient). `backbones.encode_at` prepares once per layer object, so ALBERT's shared layer concatenates and
        transposes once per forward pass rather than at each of its calls."""
        attention, dtype = self._self_attention_layer, self.compute_dtype
        hidden = attention._query_dense.kernel.shape[0]
        width = attention.num_heads * attention.key_dim
        parts = [attention._query_dense, attention._key_dense, attention._value_dense]
        prepared = {
            "qkv": tf.concat([tf.reshape(tf.cast(d.kernel, dtype), [hidden, width]) for d in parts], 1),
            "qkv_bias": tf.concat([tf.reshape(tf.cast(d.bias, dtype), [-1]) for d in parts], 0),
            "output": tf.reshape(tf.cast(attention._output_dense.kernel, dtype), [width, hidden]),
            "output_bias": tf.cast(attention._output_dense.bias, dtype),
        }
        for name, dense in (("intermediate", self._feedforward_intermediate_dense),
                            ("feedforward", self._feedforward_output_dense)):
            prepared[name], prepared[name + "_bias"] = tf.cast(dense.kernel, dtype), tf.cast(dense.bias, dtype)
        for name in ("qkv", "output", "intermediate", "feedforward"):
            prepared[name + "_t"] = _transposed(prepared[name])
        return prepared

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None, return_attention_scores=False,
             query_positions=None, prepared=None):
        """keras-hub's call; `query_positions` ([batch, n] int) returns only those rows of the output, [batch, n,
        hidden], computing the attention's queries, its output and the feed-forward block for those rows only (the
        keys and values still cover every position). `prepared`: what `prepare()` returned, when the caller
        shares it between calls of this layer (made here otherwise)."""
        if self.normalize_first or attention_mask is not None or return_attention_scores:
            outputs = super().call(inputs, padding_mask=padding_mask, attention_mask=attention_mask,
                                   training=training, return_attention_scores=return_attention_scores)
            if query_positions is None:
                return outputs
            return tf.gather(outputs, query_positions, batch_dims=1)
        w = self.prepare() if prepared is None else prepared
        attention = self._self_attention_layer
        batch, seq = tf.shape(inputs)[0], tf.shape(inputs)[1]
        hidden = inputs.shape[-1]
        heads, head_dim = attention.num_heads, attention.key_dim
        width = heads * head_dim

        x = tf.reshape(inputs, [-1, hidden])  # every row; below, the rows the output has (the queries')
        if query_positions is None:
            rows = seq
            projected = _linear(x, w["qkv"], w["qkv_t"], w["qkv_bias"])
            query, key, value = _heads(projected, [batch, seq, 3, heads, head_dim])
        else:
            rows = tf.shape(query_positions)[1]
            projected = _linear(x, w["qkv"][:, width:], w["qkv_t"][width:], w["qkv_bias"][width:])
            key, value = _heads(projected, [batch, seq, 2, heads, head_dim])
            x = tf.reshape(tf.gather(inputs, query_positions, batch_dims=1), [-1, hidden])
            projected = _linear(x, w["qkv"][:, :width], w["qkv_t"][:width], w["qkv_bias"][:width])
            (query,) = _heads(projected, [batch, rows, 1, heads, head_dim])

        if padding_mask is None:
            padding_mask = tf.ones([batch, seq], "float32")
        bias = (1.0 - tf.cast(tf.reshape(padding_mask, [batch, 1, 1, seq]), "float32")) * _MASKED
        logits = tf.matmul(query, key, transpose_b=True)
        probs = _scaled_masked_softmax(logits, bias, float(attention._inverse_sqrt_key_dim))
        probs = attention._dropout_layer(probs, training=training)
        context = tf.matmul(probs, value)  # [batch, heads, rows, head_dim]
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, width])
        y = _linear(context, w["output"], w["output_t"], w["output_bias"])
        y = self._dropout(self._self_attention_dropout, y, batch, rows, hidden, training)
        x = self._layer_norm(self._self_attention_layer_norm, x, y)

        intermediate = self._feedforward_intermediate_dense
        approximate = _gelu_kind(intermediate.activation)
        if approximate is None:
            h = intermediate.activation(_linear(x, w["intermediate"], w["intermediate_t"], w["intermediate_bias"]))
        else:
            h = _bias_gelu(_linear(x, w["intermediate"], w["intermediate_t"]), w["intermediate_bias"], approximate)
        y = _linear(h, w["feedforward"], w["feedforward_t"], w["feedforward_bias"])
        y = self._dropout(self._feedforward_dropout, y, batch, rows, hidden, training)
        x = self._layer_norm(self._feedforward_layer_norm, x, y)
        return tf.reshape(x, [batch, rows, hidden])

    def _dropout(self, layer, y, batch, seq, hidden, training):
        if not self.dropout:
            return y
        # on the 3-D shape keras-hub drops on, so that the same seeds drop the same units
        return tf.reshape(layer(tf.reshape(y, [batch, seq, hidden]), training=training), [-1, hidden])

    def _layer_norm(self, layer, x, y):
        gamma, beta = tf.cast(layer.gamma, "float32"), tf.cast(layer.beta, "float32")
        return _add_layer_norm(x, y, gamma, beta, layer.epsilon)


def use_fast_encoder(backbone):
    """Switches every keras-hub `TransformerEncoder` of `backbone` to `FastTransformerEncoder` (same variables)."""
    for layer in backbone.layers:
        if type(layer) is keras_hub.layers.TransformerEncoder:
            layer.__class__ = FastTransformerEncoder
