"""Where a card's transactions were: great-circle distance and the location features.

Examples
--------
>>> round(haversine_km(48.8566, 2.3522, 51.5074, -0.1278))  # Paris to London
344
>>> haversine_km(10.0, 20.0, 10.0, 20.0)
0.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from features.events import Transaction

EARTH_RADIUS_KM = 6371.0088
#: ``lat``/``lon`` of a record without a location (integers in 1e-5 degrees).
NO_LOCATION = -(2**31)
#: Implied speeds are capped here (two transactions a millisecond apart).
SPEED_CAP_KMH = 100_000.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in kilometres between two points given in degrees.

    Parameters
    ----------
    lat1, lon1
        Latitude and longitude of the first point, in degrees.
    lat2, lon2
        Latitude and longitude of the second point, in degrees.
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def location_values(
    previous: float, lats: tuple[int, ...], lons: tuple[int, ...], txn: Transaction
) -> tuple[float, float]:
    """Distance (km) from the card's mean located record, and the speed (km/h) since
    ``previous``, the time of the last record.

    Parameters
    ----------
    previous
        Event time of the card's last record before ``txn``.
    lats, lons
        The card's records' coordinates in 1e-5 degrees (:data:`NO_LOCATION` when unknown),
        oldest first; at least one record.
    txn
        The transaction being scored: without a location both values are 0.

    Examples
    --------
    >>> from features.events import Transaction
    >>> t = Transaction("t", "c", "p", 10.0, 3600.0, lat=51.5074, lon=-0.1278)
    >>> [round(v) for v in location_values(0.0, (4885660,), (235220,), t)]  # from Paris
    [344, 344]
    >>> location_values(0.0, (NO_LOCATION,), (NO_LOCATION,), t)
    (0.0, 0.0)
    """
    if txn.lat is None or txn.lon is None:
        return 0.0, 0.0
    distance = speed = 0.0
    missing = lats.count(NO_LOCATION)
    located = len(lats) - missing
    if located:  # the sums of the located records' coordinates, exactly as integers
        # (a record without a location has NO_LOCATION as both lat and lon, see record)
        lat_sum = sum(lats) - missing * NO_LOCATION
        lon_sum = sum(lons) - missing * NO_LOCATION
        distance = haversine_km(lat_sum / located / 1e5, lon_sum / located / 1e5, txn.lat, txn.lon)
    if lats[-1] != NO_LOCATION:
        km = haversine_km(lats[-1] / 1e5, lons[-1] / 1e5, txn.lat, txn.lon)
        speed = min(km / ((txn.event_time - previous) / 3600), SPEED_CAP_KMH)
    return distance, speed
