"""Memory of the stream beyond the window: keyframes on disk (:mod:`.store`) and queries over them
(:mod:`.recall`). Core: no ROS import."""
