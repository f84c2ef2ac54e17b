"""The trial lifecycle shared by every backend: launch, observe, report and prune, retry, finish, stop."""
