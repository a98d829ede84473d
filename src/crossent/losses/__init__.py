"""What a loss is: each module holds one family, all with the class dimension last."""
