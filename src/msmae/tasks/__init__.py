"""Task wiring: configs, training loops and evaluation for pre-training, ISLR and SLT."""
