"""Request and response models of the batch-record API."""
