"""simxray layer."""
