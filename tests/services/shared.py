"""Declarations shared by the test services and the test process (no code).

Each service module imports these and implements some of them; the test process
imports only this module and starts runs.
"""

from datagraph import Flow, Processor

# A flow split across two services: svc_a squares, svc_b labels and totals.
square = Processor(name="svc_square", inputs=["svc_numbers"], outputs=["svc_squares"])
label = Processor(name="svc_label", inputs=["svc_squares"], outputs=["svc_labels"])
total = Processor(
    name="svc_total", inputs=["svc_squares"], outputs=["svc_total"], wait=True
)
SPLIT = Flow.from_processors(square, label, total).resolve()

# svc_c (a solo pool) echoes the squares of svc_a.
echo = Processor(name="svc_echo", inputs=["svc_squares"], outputs=["svc_echoed"])
ECHO = Flow.from_processors(square, echo).resolve()

# Twelve streaming processors in a chain, all in svc_a: each adds one.
CHAIN_LENGTH = 12
chain = [
    Processor(name=f"svc_chain{i}", inputs=[f"svc_c{i}"], outputs=[f"svc_c{i + 1}"])
    for i in range(CHAIN_LENGTH)
]
CHAIN = Flow.from_processors(*chain).resolve()

# Two processors that never end on their own: svc_a ticks, svc_b counts ticks.
ticker = Processor(name="svc_ticker", inputs=["svc_start"], outputs=["svc_ticks"])
tally = Processor(name="svc_tally", inputs=["svc_ticks"], outputs=["svc_counts"])
ENDLESS = Flow.from_processors(ticker, tally).resolve()

# Declared, implemented by no service.
nobody = Processor(name="svc_nobody", inputs=["svc_numbers"], outputs=["svc_void"])
NOBODY = Flow.from_processors(square, nobody).resolve()
