"""The SQuAD training input pipeline: seeded passes over the training features, batched per replica and positioned
after any number of optimizer steps in constant time, so that a resumed run reads what an uninterrupted one would
have read (`training_dataset`, used by `training/squad.py`'s `finetune_squad` and `run_squad`)."""

import random


def _feature_order(num_features, seed, start, num_pipelines, pipeline_id):
    """Indices of the training features in the order training reads them, from global position `start`: pass `e`
    over the features is the permutation that `(seed, e)` draws (stateless), so position `start` is reached in
    constant time (no pass is replayed). Input pipeline `i` of `n` reads positions `i, i + n, ...` of that stream,
    so every pipeline has data however few the features."""
    import tensorflow as tf

    first_pass, offset = divmod(int(start), num_features)

    def one_pass(index):
        key = tf.stack([tf.constant(seed, tf.int64), index])
        return tf.data.Dataset.from_tensor_slices(
            tf.argsort(tf.random.stateless_uniform([num_features], seed=key), stable=True)
        )

    order = tf.data.Dataset.range(first_pass, 2**62).flat_map(one_pass).skip(offset)
    return order.shard(num_pipelines, pipeline_id) if num_pipelines > 1 else order


def training_dataset(features, batch_size, gradient_accumulation_steps=1, strategy=None, seed=None, initial_step=0):
    """Shuffled, repeated SQuAD training batches for `strategy`: per replica, `batch_size * accumulation` rows,
    positioned after `initial_step` optimizer steps (a resumed run reads what an uninterrupted one would have).

    Under a strategy with several replicas (or Horovod ranks), each input pipeline reads its stride of one seeded
    stream of passes over all the features (see `_feature_order`).
    """
    import tensorflow as tf

    from keras_albert import distribute
    from keras_albert.data.squad.features import features_to_arrays

    strategy = strategy or tf.distribute.get_strategy()
    seed = random.SystemRandom().randrange(2**31) if seed is None else int(seed)
    arrays = {key: tf.constant(value) for key, value in features_to_arrays(features).items()}
    per_replica = batch_size * gradient_accumulation_steps
    horovod = distribute.horovod_module()
    replicas = horovod.size() if horovod is not None else strategy.num_replicas_in_sync
    start = int(initial_step) * per_replica * replicas

    def pipeline(num_pipelines, pipeline_id):
        order = _feature_order(len(features), seed, start, num_pipelines, pipeline_id)
        batches = order.batch(per_replica, drop_remainder=True)
        return batches.map(lambda rows: {key: tf.gather(value, rows) for key, value in arrays.items()}).prefetch(
            tf.data.AUTOTUNE
        )

    if horovod is not None and horovod.size() > 1:
        return pipeline(horovod.size(), horovod.rank())
    if replicas == 1:
        return pipeline(1, 0)
    return strategy.distribute_datasets_from_function(
        lambda context: pipeline(context.num_input_pipelines, context.input_pipeline_id)
    )
