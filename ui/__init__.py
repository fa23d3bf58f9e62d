"""The faces of Edge Align: the `edge-align` command line and the Gradio demo."""
