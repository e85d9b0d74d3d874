"""The ROS 2 layer of stvg_ros: the lifecycle node ``stvg_node`` and its helpers.

Everything here may import rclpy and the package's generated messages (``stvg_ros.msg``, present
in the colcon install space only); the grounding core never imports this package.
"""
