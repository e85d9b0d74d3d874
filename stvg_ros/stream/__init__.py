"""The live stream and its serving: the frame window, the grounding service (intake, queue, worker),
standing queries and answers in the camera's terms.  Imports the method only through
:mod:`stvg_ros.stream.seams`."""
