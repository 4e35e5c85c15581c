"""Sensor drivers: Raspberry Pi hardware (HX711, serial RFID portal, door contact) and files.

Every driver module follows the same shape:

* a frozen ``...Options`` dataclass with ``parse(config)`` that checks the ``options`` table
  and raises one ``ValidationError`` naming every problem (no I/O);
* a sensor class whose constructor takes already-opened resources and does no I/O;
* a ``from_config(config)`` factory that parses, imports the hardware library lazily, opens the
  hardware and returns the sensor. ``devices.registry.DRIVERS`` maps config words to these.
"""
