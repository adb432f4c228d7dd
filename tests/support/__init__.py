"""Old home of the test harness, now `devhost.testing`; these modules only re-export it for branches that
still import `tests.support` (remove once every branch is merged)."""
