"""Evaluation: the benchmarks' datasets and metrics, ``stvg-eval`` (benchmark or bag evaluation),
``stvg-calibrate`` and rosbag2 files without ROS.  Nothing in the serving path imports it."""
