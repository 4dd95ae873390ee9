"""Training: the engine shared by every trainable model (engine), and the data they read (data).

Importing this package is cheap; torch is imported when training starts.
"""
