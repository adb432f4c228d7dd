"""Code shared by the API, the orchestrations and the activities: settings, storage, contracts."""
