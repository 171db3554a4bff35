"""service: see ARCHITECTURE in README; filled by later issues."""
