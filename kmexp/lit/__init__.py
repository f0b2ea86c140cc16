"""LightningModules: supervised classification and episodic few-shot learning."""
