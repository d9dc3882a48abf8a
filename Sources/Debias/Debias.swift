// Debias module.
