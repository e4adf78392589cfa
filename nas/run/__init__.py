"""What a run is made of: checkpoints, resume, run logs, device and seeds, the memory floor, torchrun,
and the epoch skeleton shared by search and retraining (`epoch.EpochRun`)."""
