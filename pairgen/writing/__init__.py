"""The build: orchestration, the shard plan and the shard tasks."""
