"""Legacy tf_keras models, delegated to tensorflow-model-optimization (imported lazily)."""
