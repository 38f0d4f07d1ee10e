"""LightningModules: one file per model family, building blocks next to the module that uses them."""
