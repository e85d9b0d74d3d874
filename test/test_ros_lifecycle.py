"""Lifecycle, parameters, QoS warnings and sim time of the installed node, through its ROS services."""

from __future__ import annotations

import threading
import time

import pytest

from ros_harness import Client, NodeProcess, image_msg, require_ros, unique_namespace, wait_for

pytestmark = pytest.mark.ros

NS = 1_000_000_000
SIM_T0 = 5_000 * NS


def test_lifecycle_parameters_qos_and_sim_time(tiny_model_dir, tmp_path):
    require_ros()
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from stvg_ros.msg import GroundingQuery, Status, Tube
    from stvg_ros.ros.convert import ns_to_stamp, stamp_to_ns

    ns = unique_namespace()
    proc = NodeProcess(ns, {
        "model_path": tiny_model_dir("qwen2_5_vl"), "device": "cpu", "autostart": False,
        "image_reliability": "reliable", "image_depth": 20, "window_rate": 0.0, "num_frames": 4, "status_rate": 10.0,
        "use_sim_time": True,
    }, tmp_path / "node.log")
    client = Client(namespace=ns)
    stop_clock = threading.Event()
    try:
        node = f"{ns}/stvg_node"

        def state() -> int:
            return client.call(GetState, f"{node}/get_state", GetState.Request()).current_state.id

        def change(tid: int) -> bool:
            req = ChangeState.Request()
            req.transition = Transition(id=tid)
            return client.call(ChangeState, f"{node}/change_state", req, timeout=90).success

        def set_param(name, value) -> tuple[bool, str]:
            v = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value) if isinstance(value, int) \
                else ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
            res = client.call(SetParameters, f"{node}/set_parameters",
                              SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])).results[0]
            return res.successful, res.reason

        wait_for(lambda: proc.alive() and _service_ready(client, f"{node}/get_state"), 60, "lifecycle services", proc)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED  # autostart off

        # invalid values are refused with a message that names the fix; valid ones are taken
        ok, reason = set_param("num_frames", 1)
        assert not ok and "num_frames" in reason and "at least 2" in reason
        ok, reason = set_param("span_rule", "sometimes")
        assert not ok and "topk" in reason and "grow" in reason
        ok, reason = set_param("window_rate", -3)
        assert not ok and "window_rate" in reason
        assert set_param("query_queue_size", 3)[0]

        # sim time: the node's clock follows /clock
        clock_pub = client.node.create_publisher(Clock, "/clock", 10)

        def run_clock():
            t = SIM_T0
            while not stop_clock.is_set():
                clock_pub.publish(Clock(clock=ns_to_stamp(t)))
                t += NS // 10
                time.sleep(0.05)

        threading.Thread(target=run_clock, daemon=True).start()

        assert change(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        status = client.collect(Status, "status", 10)
        wait_for(lambda: status, 20, "status messages", proc)
        assert status[-1].state == "inactive"
        assert stamp_to_ns(status[-1].header.stamp) >= SIM_T0, "status must be stamped with the sim clock"

        assert change(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE

        # a best-effort camera cannot feed a reliable subscription: the node must say so
        be_cam = client.node.create_publisher(Image, "image", QoSProfile(depth=5,
                                                                         reliability=ReliabilityPolicy.BEST_EFFORT))
        wait_for(lambda: "QoS mismatch" in proc.log(), 20, "the incompatible-QoS warning", proc)
        assert "image_reliability" in proc.log()
        client.node.destroy_publisher(be_cam)

        cam = client.node.create_publisher(Image, "image", QoSProfile(depth=20,
                                                                      reliability=ReliabilityPolicy.RELIABLE))
        tubes = client.collect(Tube, "tube", 20)
        ask = client.node.create_publisher(GroundingQuery, "query_request", 10)
        wait_for(lambda: cam.get_subscription_count() and ask.get_subscription_count(), 20, "subscriptions", proc)
        stamps = [SIM_T0 + i * NS // 10 for i in range(6)]
        for i, s in enumerate(stamps):
            cam.publish(image_msg(s, seed=i))
            time.sleep(0.02)
        wait_for(lambda: status[-1].window_frames == len(stamps), 20, "frames in the window", proc)
        ask.publish(GroundingQuery(id="lc", text="the red square"))
        tube = wait_for(lambda: next((t for t in tubes if t.query_id == "lc"), None), 60, "the tube", proc)
        assert tube.reason == "" and {stamp_to_ns(b.stamp) for b in tube.boxes} <= set(stamps)
        assert status[-1].queue_capacity == 3  # the parameter set before configure took effect

        assert change(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        wait_for(lambda: cam.get_subscription_count() == 0, 20, "the image subscription to go", proc)
        assert change(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        wait_for(lambda: status[-1].state == "unconfigured" or client.node.count_publishers(f"{ns}/status") == 0,
                 20, "the status publisher to go", proc)
        # configure again works (model reloaded), then shut down through the lifecycle: the process exits
        assert change(Transition.TRANSITION_CONFIGURE)
        assert change(Transition.TRANSITION_INACTIVE_SHUTDOWN)
        t_shutdown = time.monotonic()
        wait_for(lambda: not proc.alive(), 10, "the process to exit after the shutdown transition")
        exited_after = time.monotonic() - t_shutdown
    finally:
        stop_clock.set()
        client.close()
        rc, seconds = proc.stop()
    assert rc == 0 and seconds < 5.0 and exited_after < 5.0, proc.log()[-3000:]
    assert "Traceback" not in proc.log()


def test_bad_model_path_fails_configure_but_node_lives(tmp_path):
    """Also: the installed config/stvg.yaml is a valid params file for the node (-p overrides it)."""
    require_ros()
    from ros_harness import INSTALL
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    ns = unique_namespace()
    params_file = INSTALL / "share" / "stvg_ros" / "config" / "stvg.yaml"
    assert params_file.is_file()
    proc = NodeProcess(ns, {"model_path": str(tmp_path / "no_such_model"), "status_rate": 0.0, "layers": "[6, 26]"},
                       tmp_path / "node.log", params_file=params_file)
    client = Client(namespace=ns)
    try:
        node = f"{ns}/stvg_node"
        wait_for(lambda: _service_ready(client, f"{node}/get_state"), 60, "lifecycle services", proc)
        wait_for(lambda: "configure failed" in proc.log(), 30, "the autostart failure", proc)
        assert "not a directory" in proc.log() and "model_path" in proc.log()
        assert client.call(GetState, f"{node}/get_state", GetState.Request()).current_state.id == \
            State.PRIMARY_STATE_UNCONFIGURED
        req = ChangeState.Request()
        req.transition = Transition(id=Transition.TRANSITION_CONFIGURE)
        assert not client.call(ChangeState, f"{node}/change_state", req).success
        assert proc.alive()
    finally:
        client.close()
        rc, _ = proc.stop()
    assert rc == 0


def _service_ready(client, name: str) -> bool:
    return any(n == name for n, _ in client.node.get_service_names_and_types())
