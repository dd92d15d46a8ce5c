"""Pure drawing functions: tensors and arrays in, uint8 BGR images out. No window here."""
