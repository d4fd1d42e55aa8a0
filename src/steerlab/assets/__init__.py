"""Save/load steering assets as safetensors + a JSON manifest; never pickle."""

from .store import (
    AssetError,
    asset_size_bytes,
    check_asset_compat,
    load_asset,
    manifest_digest,
    save_asset,
    write_asset_files,
)

__all__ = [
    "AssetError",
    "asset_size_bytes",
    "check_asset_compat",
    "load_asset",
    "manifest_digest",
    "save_asset",
    "write_asset_files",
]
