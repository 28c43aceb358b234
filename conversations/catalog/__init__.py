"""The catalog: providers and their models, who may use which model, presets, keys encrypted at rest."""
