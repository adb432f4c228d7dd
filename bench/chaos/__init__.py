"""The fault suite (`make chaos`): jobs of every kind under crashes, storage restarts and dropped connections."""
