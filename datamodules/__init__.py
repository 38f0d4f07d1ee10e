"""DataModules: one file per dataset family, all built on ``base.InMemoryDataModule``."""
