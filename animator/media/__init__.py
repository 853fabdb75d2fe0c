"""Reading and writing pixels: images here, video decode/encode in their own modules."""
