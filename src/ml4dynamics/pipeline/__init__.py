"""DVC stages: thin functions over the library that read params, write outputs, log runs."""
