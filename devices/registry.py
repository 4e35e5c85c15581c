"""Sensor drivers by config word, and building a sensor from its ``[[sensors]]`` table.

Importing this module imports no hardware library: gpiozero and pyserial are imported by the
drivers' ``from_config`` factories, so the simulator and file drivers work on any machine.
"""

from __future__ import annotations

from collections.abc import Callable

from devices.base import Sensor, SensorConfig, SensorFactory
from devices.drivers.door import DoorOptions, DoorSensor
from devices.drivers.hx711 import HX711Options, HX711Sensor
from devices.drivers.jsonl import JsonlOptions, JsonlSensor
from devices.drivers.rfid import RfidOptions, RfidPortalSensor
from devices.sim.driver import SimOptions, SimSensor
from pledgewatch.errors import ValidationError
from pledgewatch.topics import ID_PATTERN

DRIVERS: dict[str, SensorFactory] = {
    "hx711": HX711Sensor.from_config,
    "rfid-serial": RfidPortalSensor.from_config,
    "door": DoorSensor.from_config,
    "jsonl": JsonlSensor.from_config,
    "sim": SimSensor.from_config,
}

# Option checks without I/O, so a config can be validated before any hardware is touched.
OPTION_PARSERS: dict[str, Callable[[SensorConfig], object]] = {
    "hx711": HX711Options.parse,
    "rfid-serial": RfidOptions.parse,
    "door": DoorOptions.parse,
    "jsonl": JsonlOptions.parse,
    "sim": SimOptions.parse,
}


def config_problems(config: SensorConfig) -> list[str]:
    """Every problem with one sensor's config (device id, driver word, options); no I/O."""
    problems: list[str] = []
    if not isinstance(config.device, str) or ID_PATTERN.fullmatch(config.device) is None:
        problems.append(f"device: got {config.device!r}, want an id of [a-z0-9._-]")
    parse = OPTION_PARSERS.get(config.driver)
    if parse is None:
        known = ", ".join(sorted(DRIVERS))
        problems.append(f"driver: got {config.driver!r}, want one of {known}")
        return problems
    try:
        parse(config)
    except ValidationError as exc:
        problems.append(str(exc))
    return problems


def build_sensor(config: SensorConfig) -> Sensor:
    """Check the config (raising one ``ValidationError`` listing every problem), then open the
    sensor with its driver's factory (which may raise ``SensorOpenError``).

    Messages do not repeat the device id: the caller (the gateway config) adds its context.
    """
    problems = config_problems(config)
    if problems:
        raise ValidationError("; ".join(problems))
    return DRIVERS[config.driver](config)
