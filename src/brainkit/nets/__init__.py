"""Network builders (MONAI networks configured for brainkit's jobs)."""
