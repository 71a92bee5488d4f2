"""Event-level ACIS pileup Monte Carlo."""
from .grades import ASCA_GRADE, GOOD_GRADES, asca_grade
from .simulate import EventList, EventSimConfig, simulate_events

__all__ = ["ASCA_GRADE", "GOOD_GRADES", "asca_grade", "EventList", "EventSimConfig", "simulate_events"]
