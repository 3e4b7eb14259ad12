// The general cyclical schedule and the standard schedules.
