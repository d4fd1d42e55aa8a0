"""Datasets shipped with steerlab and loaders for users' own data."""
