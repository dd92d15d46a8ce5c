"""deepvis: see, live, what a convolutional network sees."""

import os

__version__ = "0.1.0"

# Quiet OpenCV's and FFmpeg's own logging (missing cameras, dropped streams); deepvis reports
# such problems itself in one line. Must be set before cv2 is first imported.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning made a forward 10-350x
# slower (toolbox/cpu_threads.py). Takes effect only if set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
