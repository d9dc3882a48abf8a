// Patch module.
