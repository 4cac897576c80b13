"""Files to text: one module per format family (`formats.load` picks it), and the splitter that
cuts the text into chunks that fit the embedder."""
