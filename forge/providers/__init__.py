"""Provider adapters: one module per vendor, imported only when that provider is used."""
